"""GET /api/analytics/overview: hand-computed totals, the default window, the daily series."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.analytics.conftest import (
    assert_error,
    at,
    event,
    ingest,
    midnight,
    record_dataset,
)

pytestmark = pytest.mark.django_db

OVERVIEW = "/api/analytics/overview"
MONEY = ("cost", "revenue", "margin", "marginPct", "usageUnits")


def day_iso(days_ago: int) -> str:
    return midnight(days_ago).date().isoformat()


class TestTotals:
    def test_totals_equal_the_hand_computation(self, tenant, catalog):
        record_dataset(tenant.api())
        body = tenant.api().get(OVERVIEW).json()
        assert body["events"] == 5
        assert body["cost"] == "1.0035"
        assert body["revenue"] == "0.415"
        assert body["margin"] == "-0.5885"
        assert body["marginPct"] == "-141.81"
        assert body["unpricedEvents"] == 1
        assert body["usageUnits"] == "5"
        assert body["customers"] == 3
        assert body["features"] == 2
        # gpt-4o/openai, claude-sonnet-4/anthropic, mystery-1 (events naming no model: none)
        assert body["models"] == 3

    def test_money_is_exact_decimal_strings_never_floats(self, tenant, catalog):
        # 0.1 + 0.2 is 0.30000000000000004 in binary floating point.
        ingest(
            tenant.api(),
            event(cost="0.1", revenue="0.1", when=at(1)),
            event(cost="0.2", revenue="0.2", when=at(1)),
            event(cost="0.000000000001", revenue="0.000000000002", when=at(2)),
        )
        response = tenant.api().get(OVERVIEW)
        body = json.loads(response.content, parse_float=lambda raw: pytest.fail(f"float {raw}"))
        assert body["cost"] == "0.300000000001"
        assert body["revenue"] == "0.300000000002"
        assert body["margin"] == "0.000000000001"
        for name in MONEY:
            assert isinstance(body[name], str), name
        for day in body["daily"]:
            for name in ("cost", "revenue", "margin"):
                assert isinstance(day[name], str)

    def test_large_sums_stay_exact(self, tenant, catalog):
        # Sums beyond the 28 digits of Python's default decimal context stay exact.
        big = "999999999999.999999999999"
        ingest(tenant.api(), *[event(cost=big, revenue="0.000000000001") for _ in range(3)])
        body = tenant.api().get(OVERVIEW).json()
        assert Decimal(body["cost"]) == Decimal(big) * 3
        assert body["cost"] == "2999999999999.999999999997"
        assert Decimal(body["margin"]) == Decimal("0.000000000003") - Decimal(big) * 3
        assert body["marginPct"] is not None

    def test_unpriced_events_are_counted_not_costed_as_zero(self, tenant, catalog):
        ingest(
            tenant.api(),
            event(model="no-such-model", inputTokens=5, outputTokens=5),
            # No token counts and usageUnits that are no token count: unpriced (whole units
            # would be priced as input tokens, an estimate: tests/events/test_estimated_cost.py).
            event(model="gpt-4o", modelProvider="openai", usageUnits="1.5"),
            event(cost="0.5"),
        )
        body = tenant.api().get(OVERVIEW).json()
        assert body["events"] == 3
        assert body["unpricedEvents"] == 2
        assert body["cost"] == "0.5"

    def test_margin_pct_is_null_without_revenue(self, tenant, catalog):
        ingest(tenant.api(), event(cost="0.5"))
        body = tenant.api().get(OVERVIEW).json()
        assert body["margin"] == "-0.5"
        assert body["marginPct"] is None

    def test_empty_environment_has_zero_totals(self, tenant):
        body = tenant.api().get(OVERVIEW).json()
        assert body["events"] == 0
        assert body["cost"] == "0"
        assert body["marginPct"] is None
        assert (body["customers"], body["features"], body["models"]) == (0, 0, 0)
        assert len(body["daily"]) == 30

    def test_totals_come_from_rollups_not_raw_events(self, tenant, catalog):
        record_dataset(tenant.api())
        with CaptureQueriesContext(connection) as queries:
            assert tenant.api().get(OVERVIEW).status_code == 200
        sql = " ".join(query["sql"] for query in queries.captured_queries)
        # The default window is whole days: the daily rollups serve it (the hourly one
        # only serves a window's edge hours).
        assert re.search(r'"events_(hourly|dailyfeaturemodel|dailycustomer)rollup"', sql)
        assert not re.search(r'"events_event"', sql)


class TestWindow:
    def test_default_window_is_the_last_30_days_today_included(self, tenant, catalog):
        ingest(
            tenant.api(),
            # The first instant of the window and the last one before it.
            event(cost="1", when=midnight(29).isoformat()),
            event(cost="2", when=(midnight(29) - dt.timedelta(seconds=1)).isoformat()),
        )
        body = tenant.api().get(OVERVIEW).json()
        assert body["from"] == midnight(29).isoformat().replace("+00:00", "Z")
        assert body["to"] == (midnight(0) + dt.timedelta(days=1)).isoformat().replace("+00:00", "Z")
        assert body["events"] == 1
        assert body["cost"] == "1"

    def test_daily_series_has_every_day_of_the_window_in_order(self, tenant, catalog):
        record_dataset(tenant.api())
        daily = tenant.api().get(OVERVIEW).json()["daily"]
        assert [day["date"] for day in daily] == [day_iso(n) for n in range(29, -1, -1)]
        by_date = {day["date"]: day for day in daily}
        assert by_date[day_iso(1)] == {
            "date": day_iso(1),
            "events": 2,
            "cost": "0.3",
            "revenue": "0.4",
            "margin": "0.1",
            "unpricedEvents": 0,
        }
        assert by_date[day_iso(3)]["unpricedEvents"] == 1
        assert by_date[day_iso(3)]["cost"] == "0"
        assert by_date[day_iso(5)]["cost"] == "0.7"
        assert by_date[day_iso(4)]["events"] == 0
        assert sum(day["events"] for day in daily) == 5
        assert sum(Decimal(day["cost"]) for day in daily) == Decimal("1.0035")

    def test_explicit_window(self, tenant, catalog):
        record_dataset(tenant.api())
        body = tenant.api().get(OVERVIEW, {"from": day_iso(3), "to": day_iso(1)}).json()
        # Days 3 and 2 back: e4 (unpriced) and e3.
        assert body["events"] == 2
        assert body["cost"] == "0.0035"
        assert body["unpricedEvents"] == 1
        assert [day["date"] for day in body["daily"]] == [day_iso(3), day_iso(2)]

    def test_window_is_widened_to_whole_hours(self, tenant, catalog):
        record_dataset(tenant.api())
        # e3 is at 09:00 two days back; a window starting 09:30 still covers that hour.
        body = tenant.api().get(OVERVIEW, {"from": at(2, 9, 30), "to": at(2, 9, 45)}).json()
        assert body["from"] == at(2, 9)
        assert body["to"] == at(2, 10)
        assert body["events"] == 1

    def test_window_with_offset_and_only_from(self, tenant, catalog):
        record_dataset(tenant.api())
        # 40 days back, given as a +02:00 time; "+" often arrives decoded as a space.
        start = (midnight(41) + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S") + " 02:00"
        body = tenant.api().get(OVERVIEW, {"from": start}).json()
        assert body["from"] == midnight(41).isoformat().replace("+00:00", "Z")
        assert body["events"] == 6  # e6 too; `to` defaults to the end of today

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"from": "yesterday"}, "from"),
            ({"from": "2026-13-01"}, "from"),
            ({"to": "2026-02-30"}, "to"),
            ({"from": "0001-01-01"}, "from"),
            ({"from": "9999-12-31"}, "from"),
            ({"to": "1969-12-31"}, "to"),
            ({"to": "9999-12-31T23:59:59"}, "to"),
            ({"from": "2026-03-01", "to": "2026-02-01"}, "to"),
            ({"from": "2026-03-01", "to": "2026-03-01"}, "to"),
            ({"from": "2024-01-01", "to": "2026-01-01"}, "from"),
            ({"from": "x" * 100}, "from"),
        ],
    )
    def test_bad_windows_are_400_in_the_envelope(self, tenant, params, field):
        error = assert_error(tenant.api().get(OVERVIEW, params), 400, "validation_failed")
        assert field in error["fields"]
