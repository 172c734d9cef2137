"""A subscription's paid billing periods, rebuilt from its history.

The subscriptions app keeps only the period in force; the billing cycle needs
the ones that ended too, whenever it gets to run (the period job, or any write
on the subscription, may already have moved it on). They follow from what is
recorded, with the same arithmetic as :mod:`apps.subscriptions.services`:

* paid periods start at the end of the trial, or at the subscription's start;
* they are anchored there (:func:`apps.subscriptions.periods.period_at`), and a
  switch to a plan of another interval re-anchors them at 00:00 UTC of the
  switch's day (a switch during the trial does not: the paid periods of the new
  length start at its end);
* the plan in force at an instant is the last plan change (completed, or
  pending and already due) effective at or before it;
* an immediate cancellation cuts the last period at ``ended_at``; a scheduled
  one ends it at ``cancel_at``, whether or not the period job applied it yet.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from apps.subscriptions.models import Subscription, SubscriptionChange
from apps.subscriptions.periods import day_start, period_bounds, period_number_at

if TYPE_CHECKING:
    from apps.plans.models import Plan

# More periods than any subscription can have had (a century of months).
MAX_PERIODS = 1200


@dataclasses.dataclass(frozen=True, slots=True)
class PlanSpan:
    """The plan in force during ``[start, end)``."""

    start: dt.datetime
    end: dt.datetime
    plan: Plan


@dataclasses.dataclass(frozen=True, slots=True)
class Period:
    """One paid billing period: ``[start, end)``; ``natural_end`` is where the anchored
    period would end (later than ``end`` when a cancellation or re-anchor cut it)."""

    start: dt.datetime
    end: dt.datetime
    natural_end: dt.datetime
    spans: tuple[PlanSpan, ...]

    @property
    def plan_at_start(self) -> Plan:
        return self.spans[0].plan

    @property
    def plan_at_end(self) -> Plan:
        return self.spans[-1].plan

    @property
    def is_empty(self) -> bool:
        return self.end <= self.start


@dataclasses.dataclass(frozen=True, slots=True)
class _Anchor:
    at: dt.datetime
    months: int


class Timeline:
    """The paid periods and plans of one subscription.

    ``changes``: the subscription's plan changes that are completed, or pending
    with ``effective_at <= now`` (due; the period job applies them at the
    boundary), in any order. ``plans``: every plan they name, by id.
    """

    def __init__(
        self,
        subscription: Subscription,
        changes: Sequence[SubscriptionChange],
        plans: dict[object, Plan],
    ) -> None:
        self.subscription = subscription
        self.changes = sorted(
            (c for c in changes if c.status != SubscriptionChange.Status.CANCELLED),
            key=lambda c: (c.effective_at, c.requested_at),
        )
        self.plans = plans
        self.paid_start: dt.datetime = subscription.trial_ends_at or subscription.started_at
        # When the subscription ends (or is scheduled to): None while it runs on.
        self.ends_at: dt.datetime | None = subscription.ended_at or subscription.cancel_at
        first_plan_id = self.changes[0].from_plan_id if self.changes else subscription.plan_id
        self._initial_plan = plans[first_plan_id]
        anchors = [_Anchor(self.paid_start, self.plan_at(self.paid_start).interval_months)]
        for change in self.changes:
            from_plan, to_plan = plans[change.from_plan_id], plans[change.to_plan_id]
            if from_plan.interval_months == to_plan.interval_months:
                continue
            if change.effective_at < self.paid_start:
                continue  # during the trial: the paid periods take the new length at its end
            anchors.append(_Anchor(day_start(change.effective_at), to_plan.interval_months))
        # Stable: of two anchors at one instant, the later recorded wins.
        self._anchors = sorted(anchors, key=lambda a: a.at)

    @property
    def billing_timing(self) -> str:
        """In advance or in arrears (a plan change cannot switch it)."""
        return self._initial_plan.billing_timing

    @property
    def currency(self) -> str:
        return self._initial_plan.currency

    def plan_at(self, at: dt.datetime) -> Plan:
        plan = self._initial_plan
        for change in self.changes:
            if change.effective_at > at:
                break
            plan = self.plans[change.to_plan_id]
        return plan

    def spans(self, start: dt.datetime, end: dt.datetime) -> tuple[PlanSpan, ...]:
        """The plans in force over ``[start, end)``, in order (at least one span)."""
        out: list[PlanSpan] = []
        cursor, plan = start, self.plan_at(start)
        for change in self.changes:
            if change.effective_at <= start:
                continue
            if change.effective_at >= end:
                break
            if change.effective_at > cursor:
                out.append(PlanSpan(cursor, change.effective_at, plan))
                cursor = change.effective_at
            plan = self.plans[change.to_plan_id]
        out.append(PlanSpan(cursor, max(end, cursor), plan))
        return tuple(out)

    def _anchor_at(self, at: dt.datetime) -> tuple[_Anchor, dt.datetime | None]:
        """The anchor in force at ``at`` and the next re-anchor after it (None: none)."""
        current = self._anchors[0]
        following: dt.datetime | None = None
        for anchor in self._anchors:
            if anchor.at <= at:
                current = anchor
            else:
                following = anchor.at
                break
        return current, following

    def period_containing(self, at: dt.datetime) -> Period | None:
        """The paid period that contains ``at`` (None before the paid start or after the end)."""
        if at < self.paid_start or (self.ends_at is not None and at >= self.ends_at):
            return None
        anchor, following = self._anchor_at(at)
        number = period_number_at(anchor.at, anchor.months, at)
        start, natural_end = period_bounds(anchor.at, anchor.months, number)
        end = natural_end
        if following is not None and following < end:
            end = following
        if self.ends_at is not None and self.ends_at < end:
            end = self.ends_at
        return Period(start, end, natural_end, self.spans(start, end))

    def next_boundary(self, after: dt.datetime) -> dt.datetime | None:
        """The first period boundary after ``after`` (a boundary itself), or None when the
        subscription has ended by then."""
        ended = self.subscription.ended_at
        if ended is not None and after >= ended:
            return None
        if after < self.paid_start:
            return min(self.paid_start, self.ends_at) if self.ends_at else self.paid_start
        period = self.period_containing(after)
        return period.end if period is not None else None

    def periods_from(self, at: dt.datetime) -> Iterator[Period]:
        """Consecutive non-empty paid periods, from the one containing ``at`` (or the first,
        when ``at`` is earlier) until the subscription's end."""
        cursor = max(at, self.paid_start)
        for _ in range(MAX_PERIODS):
            period = self.period_containing(cursor)
            if period is None:
                return
            if not period.is_empty:
                yield period
            cursor = period.end if period.end > cursor else period.natural_end
