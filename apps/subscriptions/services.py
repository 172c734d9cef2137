"""Writes for subscriptions: subscribe, cancel (now or at period end) and revert,
change plan (now or at period end) and cancel a scheduled change, mark past due,
and move billing periods on.

Locking: every write on one subscription first locks its row
(``SELECT ... FOR UPDATE``), so user actions and the period job serialise on it.
Creating a subscription locks the *customer* row first, so two concurrent
subscribes for one customer queue; the partial unique index
``subscription_one_live_per_customer`` is the backstop.

Upgrade or downgrade: an explicit ``timing`` (``now`` / ``period_end``) wins;
else an explicit ``change_type`` (``upgrade`` -> now, ``downgrade`` -> period
end, as the reference API does); else the plans' base prices decide, compared
per month (an annual price counts as a twelfth): dearer is an upgrade, applied
now; the same or cheaper is a downgrade, applied at the period end. Proration
money is the billing cycle's job; the switch is recorded as a
``SubscriptionChange`` with the period it happened in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.audit import audit_change, changes_of
from apps.accounts.models import AuditEntry, Organization
from apps.core.errors import Conflict, NotFound, ValidationFailed
from apps.core.months import add_months
from apps.core.tenancy import scoped
from apps.customers.models import Customer
from apps.plans.models import Plan

from . import errors
from .models import Subscription, SubscriptionChange
from .periods import day_start, period_number_at

if TYPE_CHECKING:
    from apps.accounts.audit import Actor
    from apps.accounts.models import Environment

MAX_TRIAL_DAYS = 730
MAX_GRACE_DAYS = 365
ONE_LIVE_CONSTRAINT = "subscription_one_live_per_customer"
ONE_PENDING_CONSTRAINT = "subscriptionchange_one_pending"
# A period job run catches a subscription up by at most this many periods (then the next run).
MAX_PERIODS_PER_RUN = 240


def _constraint_of(exc: IntegrityError) -> str | None:
    return getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)


def _locked(subscription: Subscription) -> Subscription:
    return scoped(
        Subscription.objects.select_for_update(of=("self",)).select_related("plan", "customer"),
        subscription.environment_id,
    ).get(pk=subscription.pk)


def _locked_current(subscription: Subscription, now: dt.datetime) -> Subscription:
    """The subscription locked and, if its period ended before the period job got to it,
    moved into the period containing ``now`` first, so an action applies to the
    period the customer is really in (not to one that has already ended)."""
    subscription = _locked(subscription)
    if subscription.is_live and subscription.current_period_end <= now:
        _advance_one(subscription, now, AdvanceResult())
    return subscription


def _pending_change(subscription: Subscription) -> SubscriptionChange | None:
    return (
        scoped(SubscriptionChange, subscription.environment_id)
        .filter(subscription_id=subscription.pk, status=SubscriptionChange.Status.PENDING)
        .select_related("to_plan")
        .first()
    )


def _ensure_live(subscription: Subscription) -> None:
    if not subscription.is_live:
        raise Conflict("The subscription is cancelled.", code=errors.SUBSCRIPTION_CANCELLED)


def _subscribable(plan: Plan, environment_id: Any) -> Plan:
    """The plan as it is now (re-read in this transaction); 409 unless active."""
    if plan.environment_id != environment_id:
        raise NotFound("No such plan.")
    plan = Plan.objects.get(pk=plan.pk)
    if plan.status != Plan.Status.ACTIVE:
        raise Conflict(
            f"The plan '{plan.key}' is {plan.status}; only active plans can be subscribed to.",
            code=errors.PLAN_NOT_ACTIVE,
        )
    return plan


# -- subscribe ----------------------------------------------------------------------------


@transaction.atomic
def subscription_create(
    *,
    environment: Environment,
    customer: Customer,
    plan: Plan,
    trial_days: int = 0,
    grace_period_days: int = 3,
    metadata: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
    actor: Actor,
) -> Subscription:
    """Subscribe ``customer`` to an active ``plan``.

    The first period starts at 00:00 UTC of today (as the reference API does)
    and is the anchor of every later one; with a trial, the trial runs from
    today to ``today + trial_days`` and the paid periods are anchored on its end.
    Unless the organization allows several, a customer holds one live
    subscription: a second is 409 ``subscription_exists``.
    """
    problems: dict[str, list[str]] = {}
    if isinstance(trial_days, bool) or not 0 <= trial_days <= MAX_TRIAL_DAYS:
        problems["trialDays"] = [f"Between 0 and {MAX_TRIAL_DAYS} days."]
    if isinstance(grace_period_days, bool) or not 0 <= grace_period_days <= MAX_GRACE_DAYS:
        problems["gracePeriod"] = [f"Between 0 and {MAX_GRACE_DAYS} days."]
    if problems:
        raise ValidationFailed(fields=problems)
    if customer.environment_id != environment.pk:
        raise NotFound("No such customer.")

    # Serialise subscribes for this customer: the check below then sees a concurrent winner.
    Customer.objects.select_for_update().filter(pk=customer.pk).values_list("pk").first()
    plan = _subscribable(plan, environment.pk)
    allow_many = (
        Organization.objects.filter(pk=environment.organization_id)
        .values_list("allow_multiple_subscriptions", flat=True)
        .get()
    )
    if not allow_many:
        existing = (
            scoped(Subscription, environment.pk)
            .filter(customer_id=customer.pk, status__in=Subscription.LIVE_STATUSES)
            .values_list("pk", flat=True)
            .first()
        )
        if existing is not None:
            raise _already_subscribed(existing)

    now = now or timezone.now()
    start = day_start(now)
    if trial_days:
        trial_end = start + dt.timedelta(days=trial_days)
        status, anchor, period_end = Subscription.Status.TRIALING, trial_end, trial_end
    else:
        trial_end = None
        status, anchor = Subscription.Status.ACTIVE, start
        period_end = add_months(start, plan.interval_months)
    subscription = Subscription(
        environment=environment,
        customer=customer,
        plan=plan,
        status=status,
        exclusive=not allow_many,
        started_at=start,
        trial_ends_at=trial_end,
        billing_anchor=anchor,
        interval_months=plan.interval_months,
        current_period_start=start,
        current_period_end=period_end,
        grace_period_days=grace_period_days,
        metadata=metadata or {},
        created_at=now,
        updated_at=now,
    )
    try:
        with transaction.atomic():
            subscription.save(force_insert=True)
    except IntegrityError as exc:
        if _constraint_of(exc) != ONE_LIVE_CONSTRAINT:
            raise
        raise _already_subscribed(None) from None
    _audit(
        subscription,
        AuditEntry.Action.SUBSCRIPTION_CREATED,
        actor,
        {
            "plan": plan.key,
            "status": subscription.status,
            "startedAt": start,
            "trialEndsAt": trial_end,
        },
        environment=environment,
    )
    return subscription


def _audit(
    subscription: Subscription,
    action: str,
    actor: Actor | None,
    detail: dict[str, Any],
    environment: Environment | None = None,
) -> None:
    audit_change(
        environment=environment,
        environment_id=subscription.environment_id,
        action=action,
        target_type="subscription",
        target_id=subscription.pk,
        actor=actor,
        detail={"customer": subscription.customer.reference_id, **detail},
    )


def _already_subscribed(existing: Any) -> Conflict:
    extra = {"subscriptionId": str(existing)} if existing else {}
    return Conflict(
        "The customer already has a live subscription; change its plan instead "
        "(or allow several subscriptions per customer in the organization's settings).",
        code=errors.SUBSCRIPTION_EXISTS,
        extra=extra,
    )


# -- cancel -------------------------------------------------------------------------------


def _end(subscription: Subscription, at: dt.datetime) -> None:
    subscription.status = Subscription.Status.CANCELLED
    subscription.ended_at = at
    SubscriptionChange.objects.filter(
        subscription_id=subscription.pk, status=SubscriptionChange.Status.PENDING
    ).update(status=SubscriptionChange.Status.CANCELLED, cancelled_at=at)


@transaction.atomic
def subscription_cancel(
    *,
    subscription: Subscription,
    mode: str = Subscription.CancelMode.END_OF_PERIOD,
    now: dt.datetime | None = None,
    actor: Actor,
) -> Subscription:
    """Cancel at the end of the current period (default; idempotent) or immediately.

    Immediately: the subscription ends now (its current period is cut to now).
    Either way a pending plan change is dropped: the cancellation supersedes it.
    """
    if mode not in Subscription.CancelMode.values:
        raise ValidationFailed(fields={"cancelMode": ["END_OF_PERIOD or IMMEDIATE."]})
    now = now or timezone.now()
    subscription = _locked_current(subscription, now)
    _ensure_live(subscription)
    before = {"status": subscription.status, "cancelAt": subscription.cancel_at}
    if mode == Subscription.CancelMode.IMMEDIATE:
        subscription.cancel_mode = mode
        subscription.cancel_at = now
        subscription.cancelled_at = now
        subscription.current_period_end = max(now, subscription.current_period_start)
        _end(subscription, now)
    else:
        if subscription.cancel_at is not None:
            return subscription
        subscription.cancel_mode = mode
        subscription.cancel_at = subscription.current_period_end
        subscription.cancelled_at = now
        SubscriptionChange.objects.filter(
            subscription_id=subscription.pk, status=SubscriptionChange.Status.PENDING
        ).update(status=SubscriptionChange.Status.CANCELLED, cancelled_at=now)
    subscription.updated_at = now
    subscription.save()
    after = {"status": subscription.status, "cancelAt": subscription.cancel_at}
    _audit(
        subscription,
        AuditEntry.Action.SUBSCRIPTION_CANCELLED,
        actor,
        {"mode": mode, "changes": changes_of(before, after)},
    )
    return subscription


@transaction.atomic
def subscription_cancel_revert(
    *, subscription: Subscription, now: dt.datetime | None = None, actor: Actor
) -> Subscription:
    """Withdraw a scheduled (end-of-period) cancellation."""
    now = now or timezone.now()
    subscription = _locked_current(subscription, now)
    _ensure_live(subscription)
    if subscription.cancel_at is None:
        raise Conflict(
            "The subscription has no scheduled cancellation.",
            code=errors.NO_SCHEDULED_CANCELLATION,
        )
    cancel_at = subscription.cancel_at
    subscription.cancel_mode = ""
    subscription.cancel_at = None
    subscription.cancelled_at = None
    subscription.updated_at = now
    subscription.save(update_fields=["cancel_mode", "cancel_at", "cancelled_at", "updated_at"])
    _audit(
        subscription,
        AuditEntry.Action.SUBSCRIPTION_CANCEL_REVERTED,
        actor,
        {"changes": changes_of({"cancelAt": cancel_at}, {"cancelAt": None})},
    )
    return subscription


# -- plan changes -------------------------------------------------------------------------


def _switch(subscription: Subscription, plan: Plan, at: dt.datetime) -> None:
    """Put ``subscription`` on ``plan`` from ``at``; a new interval re-anchors the periods."""
    subscription.plan = plan
    if plan.interval_months == subscription.interval_months:
        return
    subscription.interval_months = plan.interval_months
    if subscription.status == Subscription.Status.TRIALING:
        return  # the trial runs on; paid periods of the new length start at its end
    anchor = day_start(at)
    subscription.billing_anchor = anchor
    subscription.current_period_start = anchor
    subscription.current_period_end = add_months(anchor, plan.interval_months)


def plan_change_kind(
    current: Plan, plan: Plan, *, timing: str | None = None, change_type: str | None = None
) -> tuple[str, str]:
    """``(change_type, timing)`` of a move from ``current`` to ``plan``: explicit values win;
    else dearer per month is an upgrade, applied now, and the same or cheaper a downgrade,
    applied at the period end (the module docstring)."""
    if change_type is None:
        upgrade = plan.monthly_price > current.monthly_price
        change_type = (
            SubscriptionChange.Type.UPGRADE if upgrade else SubscriptionChange.Type.DOWNGRADE
        )
    if timing is None:
        timing = (
            SubscriptionChange.Timing.NOW
            if change_type == SubscriptionChange.Type.UPGRADE
            else SubscriptionChange.Timing.PERIOD_END
        )
    return change_type, timing


@transaction.atomic
def subscription_change_plan(
    *,
    subscription: Subscription,
    plan: Plan,
    timing: str | None = None,
    change_type: str | None = None,
    now: dt.datetime | None = None,
    actor: Actor,
) -> SubscriptionChange:
    """Move to another active plan now, or at the end of the current period.

    See the module docstring for how the timing is chosen. Refused (409) when
    the subscription is cancelled or has a cancellation or another change
    scheduled, when the plan is the current one, or when currency or billing
    timing (in advance / in arrears) differ.
    """
    if timing is not None and timing not in SubscriptionChange.Timing.values:
        raise ValidationFailed(fields={"timing": ["now or period_end."]})
    if change_type is not None and change_type not in SubscriptionChange.Type.values:
        raise ValidationFailed(fields={"changeType": ["UPGRADE or DOWNGRADE."]})
    now = now or timezone.now()
    subscription = _locked_current(subscription, now)
    _ensure_live(subscription)
    plan = _subscribable(plan, subscription.environment_id)
    current = subscription.plan
    if plan.pk == current.pk:
        raise Conflict("The subscription is already on this plan.", code=errors.SAME_PLAN)
    if plan.currency != current.currency:
        raise Conflict(
            f"The plan is priced in {plan.currency}, the subscription in {current.currency}.",
            code=errors.CURRENCY_MISMATCH,
        )
    if plan.billing_timing != current.billing_timing:
        raise Conflict(
            "Switching between billing in advance and in arrears is not supported; "
            "cancel and subscribe again.",
            code=errors.BILLING_TIMING_MISMATCH,
        )
    if subscription.cancel_at is not None:
        raise Conflict(
            "The subscription is scheduled to cancel; revert the cancellation first.",
            code=errors.CANCELLATION_SCHEDULED,
        )
    if _pending_change(subscription) is not None:
        raise Conflict(
            "A plan change is already scheduled; cancel it first.", code=errors.CHANGE_PENDING
        )

    change_type, timing = plan_change_kind(current, plan, timing=timing, change_type=change_type)
    immediate = timing == SubscriptionChange.Timing.NOW
    change = SubscriptionChange(
        environment_id=subscription.environment_id,
        subscription=subscription,
        change_type=change_type,
        timing=timing,
        status=(
            SubscriptionChange.Status.COMPLETED if immediate else SubscriptionChange.Status.PENDING
        ),
        from_plan=current,
        to_plan=plan,
        period_start=subscription.current_period_start,
        period_end=subscription.current_period_end,
        effective_at=now if immediate else subscription.current_period_end,
        requested_at=now,
        fulfilled_at=now if immediate else None,
    )
    try:
        with transaction.atomic():
            change.save(force_insert=True)
    except IntegrityError as exc:
        if _constraint_of(exc) != ONE_PENDING_CONSTRAINT:
            raise
        raise Conflict(
            "A plan change is already scheduled; cancel it first.", code=errors.CHANGE_PENDING
        ) from None
    if immediate:
        _switch(subscription, plan, now)
        subscription.updated_at = now
        subscription.save()
    _audit(
        subscription,
        AuditEntry.Action.SUBSCRIPTION_PLAN_CHANGED,
        actor,
        {
            "plan": [current.key, plan.key],
            "changeType": change.change_type,
            "timing": change.timing,
            "status": change.status,
            "effectiveAt": change.effective_at,
            "change": change.pk,
        },
    )
    return change


@transaction.atomic
def subscription_change_cancel(
    *, subscription: Subscription, now: dt.datetime | None = None, actor: Actor
) -> SubscriptionChange:
    """Drop the scheduled plan change; the subscription stays on its plan."""
    now = now or timezone.now()
    subscription = _locked_current(subscription, now)
    change = _pending_change(subscription)
    if change is None:
        raise Conflict(
            "The subscription has no scheduled plan change.", code=errors.NO_SCHEDULED_CHANGE
        )
    change.status = SubscriptionChange.Status.CANCELLED
    change.cancelled_at = now
    change.save(update_fields=["status", "cancelled_at"])
    _audit(
        subscription,
        AuditEntry.Action.SUBSCRIPTION_CHANGE_DROPPED,
        actor,
        {"change": change.pk, "status": [SubscriptionChange.Status.PENDING, change.status]},
    )
    return change


# -- past due (set by the billing cycle) --------------------------------------------------


@transaction.atomic
def subscription_set_past_due(
    *, subscription: Subscription, past_due: bool, now: dt.datetime | None = None, actor: Actor
) -> Subscription:
    """Mark a live subscription past due (an invoice went unpaid) or back to active."""
    now = now or timezone.now()
    subscription = _locked_current(subscription, now)
    _ensure_live(subscription)
    if subscription.status == Subscription.Status.TRIALING and past_due:
        raise Conflict("A trial cannot be past due.", code=errors.SUBSCRIPTION_TRIALING)
    target = Subscription.Status.PAST_DUE if past_due else Subscription.Status.ACTIVE
    if subscription.status in {Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE}:
        subscription.status = target
        subscription.updated_at = now
        subscription.save(update_fields=["status", "updated_at"])
    return subscription


# -- the billing cycle's clock ------------------------------------------------------------


@dataclasses.dataclass
class AdvanceResult:
    advanced: int = 0  # periods moved on (a subscription may move several)
    trials_ended: int = 0
    changes_applied: int = 0
    cancelled: int = 0


def _advance_one(subscription: Subscription, now: dt.datetime, result: AdvanceResult) -> None:
    """Move one locked subscription to the period containing ``now``, applying what falls due
    at each boundary in order: a scheduled cancellation, the end of a trial, a scheduled
    plan change."""
    for _ in range(MAX_PERIODS_PER_RUN):
        boundary = subscription.current_period_end
        if boundary > now:
            break
        if subscription.cancel_at is not None and subscription.cancel_at <= boundary:
            _end(subscription, subscription.cancel_at)
            result.cancelled += 1
            break
        if subscription.status == Subscription.Status.TRIALING:
            subscription.status = Subscription.Status.ACTIVE
            result.trials_ended += 1
        change = _pending_change(subscription)
        if change is not None and change.effective_at <= boundary:
            _switch(subscription, change.to_plan, boundary)
            change.status = SubscriptionChange.Status.COMPLETED
            change.fulfilled_at = now
            change.save(update_fields=["status", "fulfilled_at"])
            result.changes_applied += 1
        anchor, months = subscription.billing_anchor, subscription.interval_months
        if boundary < anchor:  # cannot happen for stored data; keeps the loop finite regardless
            anchor = boundary
            subscription.billing_anchor = boundary
        number = period_number_at(anchor, months, boundary)
        subscription.current_period_start = boundary
        subscription.current_period_end = add_months(anchor, (number + 1) * months)
        result.advanced += 1
    subscription.updated_at = now
    subscription.save()


def subscription_advance_periods(
    *, now: dt.datetime | None = None, batch_size: int = 200
) -> AdvanceResult:
    """Move every live subscription whose period has ended into its current period.

    For every tenant (a system job). Idempotent: a subscription already in the
    period containing ``now`` is not touched. Safe to run concurrently: rows
    are taken with ``FOR UPDATE SKIP LOCKED`` and re-checked under the lock, so
    two runners never advance the same subscription twice; a row locked by a
    user action is left for the next run. Each batch commits on its own.
    """
    now = now or timezone.now()
    result = AdvanceResult()
    while True:
        with transaction.atomic():
            due = list(
                Subscription.objects.filter(
                    status__in=Subscription.LIVE_STATUSES, current_period_end__lte=now
                )
                .select_for_update(skip_locked=True)
                .order_by("current_period_end", "id")[:batch_size]
            )
            for subscription in due:
                _advance_one(subscription, now, result)
        if len(due) < batch_size:
            return result
