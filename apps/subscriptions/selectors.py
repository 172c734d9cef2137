"""Reads for subscriptions; every function takes the environment first.

:func:`active_subscription_rules` is what entitlement checks and revenue at
ingestion build on: for one customer, each feature rule of each subscription in
force, with the billing period and the usage-cap window that apply *now*.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db.models import OuterRef, Prefetch, Q, QuerySet, Subquery
from django.utils import timezone

from apps.core.errors import NotFound
from apps.core.tenancy import scoped
from apps.plans.models import PlanFeatureRule
from apps.plans.pricing import Rule

from .models import Subscription, SubscriptionChange
from .periods import cap_window, period_at

if TYPE_CHECKING:
    from apps.accounts.models import Environment
    from apps.customers.models import Customer


def subscriptions_for(environment: Environment) -> QuerySet[Subscription]:
    return scoped(Subscription, environment)


def with_details(subscriptions: QuerySet[Subscription]) -> QuerySet[Subscription]:
    """Customer, plan and the pending change (``pending_changes``) in at most two queries."""
    pending = SubscriptionChange.objects.filter(
        status=SubscriptionChange.Status.PENDING
    ).select_related("from_plan", "to_plan")
    return subscriptions.select_related("customer", "plan").prefetch_related(
        Prefetch("changes", queryset=pending, to_attr="pending_changes")
    )


def subscription_get(environment: Environment, subscription_id: str) -> Subscription:
    """The environment's subscription with this id (a UUID), else 404."""
    try:
        pk = uuid.UUID(str(subscription_id))
    except ValueError:
        raise NotFound("No such subscription.") from None
    subscription = with_details(subscriptions_for(environment)).filter(pk=pk).first()
    if subscription is None:
        raise NotFound("No such subscription.")
    return subscription


def subscriptions_search(
    environment: Environment,
    *,
    customer: Customer | None = None,
    status: str | None = None,
    plan_id: uuid.UUID | None = None,
) -> QuerySet[Subscription]:
    """Subscriptions, optionally of one customer, in one status (``live``: any but
    cancelled) or on one plan."""
    queryset = subscriptions_for(environment)
    if customer is not None:
        queryset = queryset.filter(customer_id=customer.pk)
    if status == "live":
        queryset = queryset.filter(status__in=Subscription.LIVE_STATUSES)
    elif status:
        queryset = queryset.filter(status=status)
    if plan_id is not None:
        queryset = queryset.filter(plan_id=plan_id)
    return with_details(queryset)


def subscription_changes(subscription: Subscription) -> QuerySet[SubscriptionChange]:
    """The plan changes of one subscription, newest first."""
    return (
        SubscriptionChange.objects.filter(
            environment_id=subscription.environment_id, subscription_id=subscription.pk
        )
        .select_related("from_plan", "to_plan")
        .order_by("-requested_at", "-id")
    )


# -- what the customer's subscriptions allow now -----------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ActiveRule:
    """One feature rule of one subscription in force, as of ``at``."""

    subscription_id: uuid.UUID
    subscription_status: str  # trialing, active or past_due: the caller decides on past_due
    subscription_started_at: dt.datetime
    plan_id: uuid.UUID
    plan_key: str
    currency: str
    feature_id: uuid.UUID
    feature_key: str
    rule_id: uuid.UUID
    is_enabled: bool
    rule: Rule  # for apps.plans.pricing.charge / marginal_charge
    reset_interval: str
    credit_denomination: str  # "" when not credit-backed
    credits_per_unit: Decimal | None
    period_start: dt.datetime  # the billing period containing ``at``
    period_end: dt.datetime
    window_start: dt.datetime  # the usage-cap window containing ``at``
    window_end: dt.datetime | None  # None: the cap never resets


def _period_now(
    row: Mapping[str, Any], plan_interval: int, at: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """The billing period containing ``at``, even when the period job has not run yet."""
    if at < row["current_period_end"]:
        return row["current_period_start"], row["current_period_end"]
    anchor, months = row["billing_anchor"], row["interval_months"]
    if row["pending_at"] is not None and row["pending_at"] <= at and plan_interval != months:
        # A due plan change with another interval re-anchors at its effective instant.
        anchor, months = row["pending_at"], plan_interval
    return period_at(anchor, months, at)


def active_subscription_rules(
    environment: Environment,
    customer: Customer,
    *,
    at: dt.datetime | None = None,
    feature_keys: Iterable[str] | None = None,
) -> list[ActiveRule]:
    """Each rule of each subscription of ``customer`` in force at ``at`` (default now).

    Two queries: the customer's live subscriptions (with their pending plan
    change), then the rules of the plans in force with their features and plans.
    Correct between runs of the period job: a period that ended is rolled
    forward in memory, a cancellation or plan change that fell due is applied.
    Ordered by subscription start, then feature key. ``feature_keys`` narrows
    the rules (e.g. the one feature an entitlement check asks about).
    """
    at = at or timezone.now()
    pending = SubscriptionChange.objects.filter(
        subscription_id=OuterRef("pk"), status=SubscriptionChange.Status.PENDING
    )
    rows = list(
        subscriptions_for(environment)
        .filter(customer_id=customer.pk, status__in=Subscription.LIVE_STATUSES)
        .filter(Q(cancel_at__isnull=True) | Q(cancel_at__gt=at))
        .annotate(
            pending_plan=Subquery(pending.values("to_plan_id")[:1]),
            pending_at=Subquery(pending.values("effective_at")[:1]),
        )
        .order_by("started_at", "id")
        .values(
            "id",
            "plan_id",
            "status",
            "started_at",
            "billing_anchor",
            "interval_months",
            "current_period_start",
            "current_period_end",
            "pending_plan",
            "pending_at",
        )
    )
    if not rows:
        return []
    plan_of = {}
    for row in rows:
        due = row["pending_plan"] is not None and row["pending_at"] <= at
        plan_of[row["id"]] = row["pending_plan"] if due else row["plan_id"]
    rules = PlanFeatureRule.objects.filter(
        environment_id=environment.pk, plan_id__in=set(plan_of.values())
    ).select_related("feature", "plan")
    if feature_keys is not None:
        rules = rules.filter(feature__key__in=list(feature_keys))
    by_plan: dict[uuid.UUID, list[PlanFeatureRule]] = {}
    for rule in sorted(rules, key=lambda r: r.feature.key):
        by_plan.setdefault(rule.plan_id, []).append(rule)

    out = []
    for row in rows:
        plan_rules = by_plan.get(plan_of[row["id"]], [])
        if not plan_rules:
            continue
        plan = plan_rules[0].plan
        period_start, period_end = _period_now(row, plan.interval_months, at)
        status = row["status"]
        if status == Subscription.Status.TRIALING and at >= row["current_period_end"]:
            status = Subscription.Status.ACTIVE
        for rule in plan_rules:
            window_start, window_end = cap_window(
                rule.reset_interval,
                at=at,
                period_start=period_start,
                period_end=period_end,
                started_at=row["started_at"],
            )
            out.append(
                ActiveRule(
                    subscription_id=row["id"],
                    subscription_status=status,
                    subscription_started_at=row["started_at"],
                    plan_id=plan.pk,
                    plan_key=plan.key,
                    currency=plan.currency,
                    feature_id=rule.feature_id,
                    feature_key=rule.feature.key,
                    rule_id=rule.pk,
                    is_enabled=rule.is_enabled,
                    rule=rule.pricing_rule(),
                    reset_interval=rule.reset_interval,
                    credit_denomination=rule.credit_denomination,
                    credits_per_unit=rule.credits_per_unit,
                    period_start=period_start,
                    period_end=period_end,
                    window_start=window_start,
                    window_end=window_end,
                )
            )
    return out
