"""Which plan and which billing period are in force at an instant: the one rule.

Every reader that asks "what does this subscription give at ``t``?" (entitlement
checks and their per-process cache, revenue at ingestion, the subscriptions API)
answers it here, from a subscription's stored row and its pending plan change
(:class:`Terms`), without waiting for the period job
(:func:`apps.subscriptions.services.subscription_advance_periods`). The job
moves rows on at each boundary; this computes, in memory, what it will have
done by ``t``:

* a subscription is in force from ``started_at`` until ``cancel_at`` (a
  scheduled cancellation that fell due ends it, applied or not);
* a pending plan change whose ``effective_at`` is at or before ``t`` is in
  force (the job applies it at the boundary);
* a trial whose period ended reads as ``active``;
* the period is the stored one while ``t`` is inside it; before the billing
  anchor it is the trial (``started_at`` to the anchor); later periods are
  rolled forward from the anchor (:func:`apps.subscriptions.periods.period_at`),
  and a due change to a plan of another interval re-anchors them at 00:00 UTC
  of its day, as :func:`apps.subscriptions.services._switch` does.

The billing cycle reconstructs periods that have *ended* from the recorded plan
changes (``apps.billing.periods.Timeline``): history, which a row and one
pending change cannot give.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping

from .models import Subscription
from .periods import day_start, period_at


@dataclasses.dataclass(frozen=True, slots=True)
class Terms:
    """What decides a subscription's plan and period at any instant: its stored row and
    its pending plan change (``pending_*`` None without one)."""

    id: uuid.UUID
    status: str
    started_at: dt.datetime
    billing_anchor: dt.datetime
    interval_months: int
    current_period_start: dt.datetime
    current_period_end: dt.datetime
    cancel_at: dt.datetime | None
    plan_id: uuid.UUID
    pending_plan_id: uuid.UUID | None
    pending_at: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class InForce:
    """One subscription as it stands at an instant: the plan in force, the status it has
    then (trialing, active or past_due) and the billing period containing the instant."""

    subscription_id: uuid.UUID
    status: str
    plan_id: uuid.UUID
    started_at: dt.datetime
    period_start: dt.datetime
    period_end: dt.datetime


def in_force_at(
    terms: Terms, at: dt.datetime, plan_intervals: Mapping[uuid.UUID, int]
) -> InForce | None:
    """The subscription at ``at``, or None when it has not started or has ended by then.

    ``plan_intervals``: the interval in months of the pending plan (absent: the
    periods keep their length).
    """
    if at < terms.started_at or (terms.cancel_at is not None and terms.cancel_at <= at):
        return None
    plan_id, due_interval = terms.plan_id, None
    pending_plan, pending_at = terms.pending_plan_id, terms.pending_at
    if pending_plan is not None and pending_at is not None and pending_at <= at:
        plan_id, due_interval = pending_plan, plan_intervals.get(pending_plan)
    status = terms.status
    if status == Subscription.Status.TRIALING and at >= terms.current_period_end:
        status = Subscription.Status.ACTIVE
    start, end = _period(terms, due_interval, at)
    return InForce(terms.id, status, plan_id, terms.started_at, start, end)


def _period(
    terms: Terms, due_interval: int | None, at: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    if terms.current_period_start <= at < terms.current_period_end:
        return terms.current_period_start, terms.current_period_end
    if at < terms.billing_anchor:
        return terms.started_at, terms.billing_anchor  # the trial (it ends at the anchor)
    anchor, months = terms.billing_anchor, terms.interval_months
    if (
        at >= terms.current_period_end
        and due_interval is not None
        and due_interval != months
        and terms.pending_at is not None
    ):
        # A due change to a plan of another interval re-anchors at 00:00 UTC of its day.
        anchor, months = day_start(terms.pending_at), due_interval
    return period_at(anchor, months, at)
