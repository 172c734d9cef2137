"""Calendar-month arithmetic, the one ``add_months`` every app uses."""

from __future__ import annotations

import calendar
import datetime as dt
from typing import TypeVar

When = TypeVar("When", dt.date, dt.datetime)


def add_months(when: When, months: int) -> When:
    """``when`` moved by ``months`` calendar months (negative: back), its day clamped to
    the target month's last day: Jan 31 + 1 -> Feb 28 (29 in a leap year). The time of
    day and the time zone are kept. Periods anchored on a day are computed from the
    anchor each time (``anchor + n``), never step by step, so that day is kept."""
    index = when.month - 1 + months
    year, month = when.year + index // 12, index % 12 + 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day)
