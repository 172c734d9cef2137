"""Reads for subscriptions; every function takes the environment first.

:func:`active_subscription_rules` is what entitlement checks and revenue at
ingestion build on: for one customer, each feature rule of each subscription in
force, with the billing period and the usage-cap window that apply *now*.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db.models import OuterRef, Prefetch, QuerySet, Subquery
from django.utils import timezone

from apps.core.errors import NotFound
from apps.core.tenancy import scoped
from apps.plans.models import Plan, PlanFeatureRule
from apps.plans.pricing import Rule

from .in_force import InForce, Terms, in_force_at
from .models import Subscription, SubscriptionChange
from .periods import cap_window

if TYPE_CHECKING:
    from apps.accounts.models import Environment
    from apps.customers.models import Customer


def subscriptions_for(environment: Environment) -> QuerySet[Subscription]:
    return scoped(Subscription, environment)


def live_subscribers(environment: Environment) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(customer id, plan id) of every subscription in force (the plan-price advice)."""
    rows = subscriptions_for(environment).filter(status__in=Subscription.LIVE_STATUSES)
    return list(rows.values_list("customer_id", "plan_id"))


def with_details(subscriptions: QuerySet[Subscription]) -> QuerySet[Subscription]:
    """Customer, plan and the pending change (``pending_changes``) in at most two queries."""
    pending = SubscriptionChange.objects.filter(
        status=SubscriptionChange.Status.PENDING
    ).select_related("from_plan", "to_plan")
    return subscriptions.select_related("customer", "plan").prefetch_related(
        Prefetch("changes", queryset=pending, to_attr="pending_changes")
    )


def subscriptions_in_force(environment: Environment, customer: Customer) -> list[Subscription]:
    """The customer's subscriptions not cancelled (trialing, active, past due), oldest
    first, with their environment and customer loaded."""
    return list(
        subscriptions_for(environment)
        .filter(customer=customer, status__in=Subscription.LIVE_STATUSES)
        .select_related("environment", "customer", "plan")
        .order_by("started_at", "pk")
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
        scoped(SubscriptionChange, subscription.environment_id)
        .filter(subscription_id=subscription.pk)
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


def subscription_terms(
    environment_id: uuid.UUID, customer_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[Terms]]:
    """Each customer's live subscriptions as :class:`Terms` (with their pending plan
    change), oldest first; every customer asked about has a list. One query."""
    ids = list(set(customer_ids))
    pending = SubscriptionChange.objects.filter(
        subscription_id=OuterRef("pk"), status=SubscriptionChange.Status.PENDING
    )
    rows = (
        scoped(Subscription, environment_id)
        .filter(
            customer_id__in=ids,
            status__in=Subscription.LIVE_STATUSES,
        )
        .annotate(
            pending_plan=Subquery(pending.values("to_plan_id")[:1]),
            pending_at=Subquery(pending.values("effective_at")[:1]),
        )
        .order_by("started_at", "id")
        .values_list(
            "customer_id",
            "id",
            "status",
            "started_at",
            "billing_anchor",
            "interval_months",
            "current_period_start",
            "current_period_end",
            "cancel_at",
            "plan_id",
            "pending_plan",
            "pending_at",
        )
    )
    out: dict[uuid.UUID, list[Terms]] = {customer_id: [] for customer_id in ids}
    for row in rows:
        out[row[0]].append(Terms(*row[1:]))
    return out


def plan_in_force(
    environment: Environment, customer: Customer, at: dt.datetime | None = None
) -> list[InForce]:
    """The customer's subscriptions in force at ``at`` (default now), oldest first, each
    with the plan, status and billing period it has then (:mod:`.in_force`). Two queries."""
    at = at or timezone.now()
    terms = subscription_terms(environment.pk, [customer.pk])[customer.pk]
    pending = {t.pending_plan_id for t in terms if t.pending_plan_id is not None}
    intervals = dict(
        scoped(Plan, environment).filter(pk__in=pending).values_list("id", "interval_months")
        if pending
        else {}
    )
    found = (in_force_at(t, at, intervals) for t in terms)
    return [state for state in found if state is not None]


def active_subscription_rules(
    environment: Environment,
    customer: Customer,
    *,
    at: dt.datetime | None = None,
    feature_keys: Iterable[str] | None = None,
) -> list[ActiveRule]:
    """Each rule of each subscription of ``customer`` in force at ``at`` (default now).

    Two queries: the customer's live subscriptions (with their pending plan
    change), then the rules of their plans (current and pending) with their
    features and plans. Correct between runs of the period job (:mod:`.in_force`).
    Ordered by subscription start, then feature key. ``feature_keys`` narrows
    the rules (e.g. the one feature an entitlement check asks about).
    """
    at = at or timezone.now()
    terms = subscription_terms(environment.pk, [customer.pk])[customer.pk]
    if not terms:
        return []
    plan_ids = {t.plan_id for t in terms} | {
        t.pending_plan_id for t in terms if t.pending_plan_id is not None
    }
    rules = (
        scoped(PlanFeatureRule, environment)
        .filter(plan_id__in=plan_ids)
        .select_related("feature", "plan")
    )
    if feature_keys is not None:
        rules = rules.filter(feature__key__in=list(feature_keys))
    by_plan: dict[uuid.UUID, list[PlanFeatureRule]] = {}
    intervals: dict[uuid.UUID, int] = {}
    for rule in sorted(rules, key=lambda r: r.feature.key):
        by_plan.setdefault(rule.plan_id, []).append(rule)
        intervals[rule.plan_id] = rule.plan.interval_months

    out = []
    for sub in terms:
        state = in_force_at(sub, at, intervals)
        if state is None:
            continue
        for rule in by_plan.get(state.plan_id, []):
            plan = rule.plan
            window_start, window_end = cap_window(
                rule.reset_interval,
                at=at,
                period_start=state.period_start,
                period_end=state.period_end,
                started_at=state.started_at,
            )
            out.append(
                ActiveRule(
                    subscription_id=state.subscription_id,
                    subscription_status=state.status,
                    subscription_started_at=state.started_at,
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
                    period_start=state.period_start,
                    period_end=state.period_end,
                    window_start=window_start,
                    window_end=window_end,
                )
            )
    return out
