"""Windows chosen on a page, margin bands and the money filters (no database)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.template import Context, Template

from apps.analytics.params import Window
from apps.analytics.selectors import Band, Totals, band_of
from apps.dashboard.margins import band
from apps.dashboard.templatetags.tanso_format import count, dec, duration, pct, usd, usd_text
from apps.dashboard.windows import window_from

NOW = dt.datetime(2026, 3, 15, 13, 30, tzinfo=dt.UTC)
END = dt.datetime(2026, 3, 16, tzinfo=dt.UTC)  # midnight that ends today


@pytest.mark.parametrize("days", [7, 30, 90])
def test_presets_are_whole_days_ending_today(days):
    choice = window_from({"range": str(days)}, now=NOW)
    assert choice.window == Window(END - dt.timedelta(days=days), END)
    assert choice.days == days and choice.error is None
    assert choice.length_days == days
    assert choice.previous == Window(
        END - dt.timedelta(days=2 * days), END - dt.timedelta(days=days)
    )
    assert choice.params() == {"range": str(days)}


def test_default_is_thirty_days():
    assert window_from({}, now=NOW).window == Window(END - dt.timedelta(days=30), END)


def test_custom_range_includes_its_last_day():
    choice = window_from({"from": "2026-01-01", "to": "2026-01-31"}, now=NOW)
    assert choice.window == Window(
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    )
    assert choice.days is None and choice.length_days == 31
    assert choice.params() == {"from": "2026-01-01", "to": "2026-01-31"}
    assert choice.api_params() == {
        "from": "2026-01-01T00:00:00+00:00",
        "to": "2026-02-01T00:00:00+00:00",
    }
    one_day = window_from({"from": "2026-01-05", "to": "2026-01-05"}, now=NOW)
    assert one_day.length_days == 1


@pytest.mark.parametrize(
    "params",
    [
        {"range": "14"},
        {"range": "-7"},
        {"from": "yesterday"},
        {"from": "2026-02-01", "to": "2026-01-01"},
        {"from": "2020-01-01", "to": "2026-01-01"},
        {"from": "0001-01-01"},
        {"to": "9999-12-31"},
    ],
)
def test_bad_windows_fall_back_to_thirty_days_and_say_why(params):
    choice = window_from(params, now=NOW)
    assert choice.window == Window(END - dt.timedelta(days=30), END)
    assert choice.error


def T(revenue: str, cost: str, unpriced: int = 0) -> Totals:
    return Totals(
        events=1 + unpriced, cost=Decimal(cost), revenue=Decimal(revenue), unpriced=unpriced
    )


@pytest.mark.parametrize(
    ("totals", "target", "expected"),
    [
        # loss: margin below 0, whatever the target; cost with no revenue is a loss.
        (T("1", "1.000000000001"), 70, Band.LOSS),
        (T("0", "0.01"), 70, Band.LOSS),
        # thin: 0 <= margin % < target.
        (T("1", "1"), 70, Band.THIN),  # exactly 0 %
        (T("100", "30.01"), 70, Band.THIN),  # 69.99 %
        # healthy: at the target or above.
        (T("100", "30"), 70, Band.HEALTHY),  # exactly 70 %
        (T("100", "0"), 70, Band.HEALTHY),
        # the target moves the line.
        (T("100", "30"), 71, Band.THIN),
        (T("100", "50"), 50, Band.HEALTHY),
        (T("100", "50"), Decimal("50.01"), Band.THIN),
        (T("100", "100"), 0, Band.HEALTHY),
        # unknown: some cost unknown (the margin shown is only an upper bound) ...
        (T("100", "1", unpriced=1), 70, Band.UNKNOWN),
        (T("0", "0", unpriced=3), 70, Band.UNKNOWN),
        # ... unless the known cost alone is already a loss;
        (T("1", "2", unpriced=1), 70, Band.LOSS),
        # or neither revenue nor cost.
        (Totals(), 70, Band.UNKNOWN),
    ],
)
def test_margin_band_boundaries(totals, target, expected):
    assert band_of(totals, Decimal(target)) == expected


def test_the_default_target_is_70():
    assert band(T("100", "30")) == Band.HEALTHY
    assert band(T("100", "30.01")) == Band.THIN


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (Decimal("1234.5"), "$1,234.50"),
        (Decimal("1.005"), "$1.00"),  # half-even at the cent
        (Decimal("0.0035"), "$0.0035"),
        (Decimal("0.1"), "$0.10"),
        (Decimal("-0.7"), "\u2212\u2060$0.70"),
        (Decimal("0.000000001"), "$0.000000001"),
        (Decimal(0), "$0.00"),
        (None, "—"),
    ],
)
def test_usd(value, shown):
    assert usd_text(value) == shown
    if value is not None:  # on a page: the same text, the exact value on hover
        assert usd(value) == f'<span class="money" title="{dec(value)} USD">{shown}</span>'


def test_signed_changes_and_percents():
    assert usd_text(Decimal("2.5"), "signed") == "+\u2060$2.50"
    assert usd_text(Decimal("-2.5"), "signed") == "\u2212\u2060$2.50"
    assert pct(Decimal("25.00")) == "25.0%"
    assert pct(Decimal("-141.81")) == "\u2212141.8%"
    assert pct(Decimal("3.25"), "signed,points") == "+3.2 pts"
    assert pct(Decimal("-0.04"), "signed") == "0.0%"
    assert pct(None) == "—"
    assert dec(Decimal("0.250000000000")) == "0.25" and dec(None) == ""
    assert count(1234567) == "1,234,567"


def test_floats_are_refused():
    with pytest.raises(TypeError):
        usd(0.1)


def test_query_tag_keeps_parameters_and_drops_blanks():
    template = Template("{% load tanso_format %}{% query params sort='-cost' page='' q=None %}")
    rendered = template.render(Context({"params": {"range": "7", "page": "3", "q": "a b"}}))
    assert rendered == "?range=7&amp;sort=-cost"


def test_durations():
    assert duration(850) == "850 ms"
    assert duration(2449) == "2.4 s"
    assert duration(192_000) == "3 min 12 s"
    assert duration(3_600_200) == "1 h 0 min"
    assert duration(None) == "—"
