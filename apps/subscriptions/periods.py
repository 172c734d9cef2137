"""Billing-period and usage-window arithmetic: pure functions on aware UTC datetimes.

Periods are anchored: period ``n`` of a subscription runs from
``anchor + n x interval`` to ``anchor + (n+1) x interval`` months, each computed
from the anchor (never from the previous period), so the anchor's day of month
is kept: Jan 31 -> Feb 28 (29 in a leap year) -> Mar 31 -> Apr 30 -> May 31.
An annual anchor on Feb 29 gives Feb 28 in common years and Feb 29 again in
leap years.
"""

from __future__ import annotations

import datetime as dt

from apps.core.months import add_months

# Reset intervals of a usage cap (apps.plans.models.PlanFeatureRule.ResetInterval).
BILLING_PERIOD = "billing_period"
DAY = "day"
WEEK = "week"
MONTH = "month"
NEVER = "never"


def day_start(at: dt.datetime) -> dt.datetime:
    """00:00 UTC of ``at``'s day (``at`` must be aware)."""
    utc = at.astimezone(dt.UTC)
    return utc.replace(hour=0, minute=0, second=0, microsecond=0)


def period_bounds(
    anchor: dt.datetime, interval_months: int, number: int
) -> tuple[dt.datetime, dt.datetime]:
    """Start and end of period ``number`` (0 = the one starting at the anchor)."""
    return (
        add_months(anchor, number * interval_months),
        add_months(anchor, (number + 1) * interval_months),
    )


def period_number_at(anchor: dt.datetime, interval_months: int, at: dt.datetime) -> int:
    """The number of the period that contains ``at`` (0 for instants before the anchor)."""
    if at < anchor:
        return 0
    months = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    number = max(months // interval_months, 0)
    while number > 0 and add_months(anchor, number * interval_months) > at:
        number -= 1
    while add_months(anchor, (number + 1) * interval_months) <= at:
        number += 1
    return number


def period_at(
    anchor: dt.datetime, interval_months: int, at: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """The period that contains ``at``."""
    return period_bounds(anchor, interval_months, period_number_at(anchor, interval_months, at))


def cap_window(
    reset_interval: str,
    *,
    at: dt.datetime,
    period_start: dt.datetime,
    period_end: dt.datetime,
    started_at: dt.datetime,
) -> tuple[dt.datetime, dt.datetime | None]:
    """The usage-cap window containing ``at``: ``[start, end)``, ``end`` None = never resets.

    ``billing_period``: the subscription's current period; ``day``: the UTC day;
    ``week``: the ISO week from Monday 00:00 UTC; ``month``: the calendar month
    (UTC); ``never``: since the subscription started.
    """
    if reset_interval == BILLING_PERIOD:
        return period_start, period_end
    if reset_interval == DAY:
        start = day_start(at)
        return start, start + dt.timedelta(days=1)
    if reset_interval == WEEK:
        start = day_start(at) - dt.timedelta(days=at.astimezone(dt.UTC).weekday())
        return start, start + dt.timedelta(days=7)
    if reset_interval == MONTH:
        start = day_start(at).replace(day=1)
        return start, add_months(start, 1)
    if reset_interval == NEVER:
        return started_at, None
    raise ValueError(f"unknown reset interval {reset_interval!r}")
