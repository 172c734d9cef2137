"""Period arithmetic: anchored months across month ends and leap years, usage windows."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.core.months import add_months
from apps.subscriptions.periods import (
    cap_window,
    day_start,
    period_at,
    period_bounds,
    period_number_at,
)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def starts(anchor: dt.datetime, interval: int, count: int) -> list[dt.date]:
    return [period_bounds(anchor, interval, n)[0].date() for n in range(count)]


def test_monthly_keeps_the_anchor_day_through_short_months():
    assert starts(utc(2025, 1, 31), 1, 6) == [
        dt.date(2025, 1, 31),
        dt.date(2025, 2, 28),
        dt.date(2025, 3, 31),  # back to the 31st: computed from the anchor, not from Feb 28
        dt.date(2025, 4, 30),
        dt.date(2025, 5, 31),
        dt.date(2025, 6, 30),
    ]


def test_monthly_in_a_leap_year():
    assert starts(utc(2024, 1, 31), 1, 3) == [
        dt.date(2024, 1, 31),
        dt.date(2024, 2, 29),
        dt.date(2024, 3, 31),
    ]
    assert starts(utc(2024, 1, 30), 1, 3)[1] == dt.date(2024, 2, 29)
    assert starts(utc(2023, 1, 29), 1, 3)[1] == dt.date(2023, 2, 28)


def test_annual_from_a_leap_day():
    assert starts(utc(2024, 2, 29), 12, 5) == [
        dt.date(2024, 2, 29),
        dt.date(2025, 2, 28),
        dt.date(2026, 2, 28),
        dt.date(2027, 2, 28),
        dt.date(2028, 2, 29),
    ]


def test_across_the_year_end():
    assert add_months(utc(2025, 11, 30), 3) == utc(2026, 2, 28)
    assert add_months(utc(2025, 12, 31), 1) == utc(2026, 1, 31)
    assert add_months(utc(2025, 12, 15, 8, 30), 12) == utc(2026, 12, 15, 8, 30)


@pytest.mark.parametrize(
    ("at", "number"),
    [
        (utc(2025, 1, 10), 0),  # before the anchor
        (utc(2025, 1, 31), 0),
        (utc(2025, 2, 27, 23, 59), 0),
        (utc(2025, 2, 28), 1),  # exactly at a boundary: the new period
        (utc(2025, 3, 30), 1),
        (utc(2025, 3, 31), 2),
        (utc(2027, 2, 28), 25),
    ],
)
def test_period_number_at(at, number):
    assert period_number_at(utc(2025, 1, 31), 1, at) == number


def test_period_at_annual():
    assert period_at(utc(2024, 2, 29), 12, utc(2026, 6, 1)) == (utc(2026, 2, 28), utc(2027, 2, 28))


def test_day_start_is_utc_midnight():
    paris = dt.timezone(dt.timedelta(hours=1))
    assert day_start(dt.datetime(2025, 1, 1, 0, 30, tzinfo=paris)) == utc(2024, 12, 31)


class TestCapWindows:
    at = utc(2025, 3, 12, 15, 30)  # a Wednesday
    period = (utc(2025, 2, 28), utc(2025, 3, 31))
    started = utc(2024, 11, 30)

    def window(self, interval: str):
        return cap_window(
            interval,
            at=self.at,
            period_start=self.period[0],
            period_end=self.period[1],
            started_at=self.started,
        )

    def test_each_interval(self):
        assert self.window("billing_period") == self.period
        assert self.window("day") == (utc(2025, 3, 12), utc(2025, 3, 13))
        assert self.window("week") == (utc(2025, 3, 10), utc(2025, 3, 17))
        assert self.window("month") == (utc(2025, 3, 1), utc(2025, 4, 1))
        assert self.window("never") == (self.started, None)
        with pytest.raises(ValueError, match="reset interval"):
            self.window("hour")
