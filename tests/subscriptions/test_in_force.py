"""The plan and period in force at an instant (apps.subscriptions.in_force): what the
period job will have done by then, computed without it; and plan_in_force, its
tenant-scoped read."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from apps.billing.periods import Timeline
from apps.customers.models import Customer
from apps.plans.models import Plan
from apps.subscriptions.in_force import Terms, in_force_at
from apps.subscriptions.models import Subscription, SubscriptionChange
from apps.subscriptions.selectors import plan_in_force
from apps.subscriptions.services import (
    subscription_advance_periods,
    subscription_cancel,
    subscription_change_plan,
    subscription_create,
)
from tests.plans.helpers import SYSTEM, make_plan


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


PLAN, OTHER = uuid.uuid4(), uuid.uuid4()


def terms(**changes: object) -> Terms:
    base: dict[str, object] = {
        "id": uuid.uuid4(),
        "status": "active",
        "started_at": utc(2025, 1, 31),
        "billing_anchor": utc(2025, 1, 31),
        "interval_months": 1,
        "current_period_start": utc(2025, 1, 31),
        "current_period_end": utc(2025, 2, 28),
        "cancel_at": None,
        "plan_id": PLAN,
        "pending_plan_id": None,
        "pending_at": None,
    }
    return Terms(**{**base, **changes})  # type: ignore[arg-type]


def test_inside_the_stored_period():
    state = in_force_at(terms(), utc(2025, 2, 10), {})
    assert state is not None
    assert (state.plan_id, state.status) == (PLAN, "active")
    assert (state.period_start, state.period_end) == (utc(2025, 1, 31), utc(2025, 2, 28))


def test_periods_roll_forward_from_the_anchor_before_the_job_runs():
    state = in_force_at(terms(), utc(2025, 4, 2), {})
    assert state is not None  # Jan 31 -> Feb 28 -> Mar 31 -> Apr 30: the day of month kept
    assert (state.period_start, state.period_end) == (utc(2025, 3, 31), utc(2025, 4, 30))


def test_not_started_or_ended_is_not_in_force():
    assert in_force_at(terms(), utc(2025, 1, 30), {}) is None
    cancelled = terms(cancel_at=utc(2025, 2, 28))
    assert in_force_at(cancelled, utc(2025, 2, 27, 23), {}) is not None
    assert in_force_at(cancelled, utc(2025, 2, 28), {}) is None


def test_a_trial_reads_as_active_once_it_ended():
    trial = terms(
        status="trialing",
        billing_anchor=utc(2025, 2, 14),
        current_period_end=utc(2025, 2, 14),
    )
    during = in_force_at(trial, utc(2025, 2, 1), {})
    after = in_force_at(trial, utc(2025, 2, 20), {})
    assert during is not None and after is not None
    assert (during.status, during.period_end) == ("trialing", utc(2025, 2, 14))
    assert (after.status, after.period_start, after.period_end) == (
        "active",
        utc(2025, 2, 14),
        utc(2025, 3, 14),
    )


def test_a_due_change_to_another_interval_re_anchors():
    pending = terms(pending_plan_id=OTHER, pending_at=utc(2025, 2, 28))
    before = in_force_at(pending, utc(2025, 2, 27), {OTHER: 12})
    after = in_force_at(pending, utc(2025, 3, 5), {OTHER: 12})
    assert before is not None and after is not None
    assert before.plan_id == PLAN
    assert (after.plan_id, after.period_start, after.period_end) == (
        OTHER,
        utc(2025, 2, 28),
        utc(2026, 2, 28),
    )


@pytest.mark.django_db
@pytest.mark.parametrize("scenario", ["roll", "trial", "to_annual", "to_monthly_sibling", "cancel"])
def test_agrees_with_what_the_period_job_then_stores(tenant, scenario):
    """Ask at an instant before the job ran, then run the job to that instant: the stored
    subscription is what plan_in_force said."""
    monthly = make_plan(tenant.test, "pro")
    customer = Customer.objects.create(environment=tenant.test, reference_id="cus_1")
    start = utc(2025, 1, 31, 9)
    sub = subscription_create(
        environment=tenant.test,
        customer=customer,
        plan=monthly,
        now=start,
        actor=SYSTEM,
        **({"trial_days": 14} if scenario == "trial" else {}),
    )
    if scenario == "to_annual":
        annual = make_plan(tenant.test, "pro_annual", interval_months=12, price=490)
        subscription_change_plan(
            subscription=sub, plan=annual, timing="period_end", now=start, actor=SYSTEM
        )
    elif scenario == "to_monthly_sibling":
        team = make_plan(tenant.test, "team", price=99)
        subscription_change_plan(
            subscription=sub, plan=team, timing="period_end", now=start, actor=SYSTEM
        )
    elif scenario == "cancel":
        subscription_cancel(subscription=sub, now=start, actor=SYSTEM)  # at period end
    at = utc(2025, 5, 3, 12)

    predicted = plan_in_force(tenant.test, customer, at)
    subscription_advance_periods(now=at)
    stored = Subscription.objects.get(pk=sub.pk)

    if scenario == "cancel":
        assert predicted == [] and stored.status == Subscription.Status.CANCELLED
        return
    assert len(predicted) == 1
    state = predicted[0]
    assert (state.subscription_id, state.plan_id, state.status) == (
        stored.pk,
        stored.plan_id,
        stored.status,
    )
    assert (state.period_start, state.period_end) == (
        stored.current_period_start,
        stored.current_period_end,
    )
    # The billing cycle's reconstruction from the recorded history says the same.
    changes = list(SubscriptionChange.objects.filter(subscription_id=sub.pk))
    plans = {plan.pk: plan for plan in Plan.objects.filter(environment_id=tenant.test.pk)}
    timeline = Timeline(stored, changes, plans)
    billed = timeline.period_containing(at)
    assert billed is not None
    assert (billed.start, billed.end) == (state.period_start, state.period_end)
    assert timeline.plan_at(at).pk == state.plan_id


@pytest.mark.django_db
def test_plan_in_force_is_tenant_isolated(tenant, outsider):
    plan = make_plan(tenant.test, "pro")
    mine = Customer.objects.create(environment=tenant.test, reference_id="cus_1")
    subscription_create(environment=tenant.test, customer=mine, plan=plan, actor=SYSTEM)
    assert len(plan_in_force(tenant.test, mine)) == 1
    # The same customer asked about from another environment or organization: nothing.
    assert plan_in_force(tenant.live, mine) == []
    assert plan_in_force(outsider.test, mine) == []
