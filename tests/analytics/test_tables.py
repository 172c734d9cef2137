"""GET /api/customers, /api/customers/{ref}, /api/features and /api/models."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.analytics import selectors
from apps.analytics.params import table_query
from tests.analytics.conftest import (
    assert_error,
    at,
    event,
    ingest,
    midnight,
    record_dataset,
)
from tests.factories import make_customer

pytestmark = pytest.mark.django_db

CUSTOMERS = "/api/customers"
FEATURES = "/api/features"
MODELS = "/api/models"
SORTS = ("cost", "revenue", "margin", "marginPct", "events", "unpricedEvents", "lastSeen")
DECIMAL_COLUMNS = {"cost", "revenue", "margin", "marginPct"}


def totals(item: dict[str, Any]) -> dict[str, Any]:
    keys = ("events", "cost", "revenue", "margin", "marginPct", "unpricedEvents")
    return {key: item[key] for key in keys}


def sort_value(item: dict[str, Any], column: str) -> Any:
    value = item[column]
    if value is None:
        return None
    if column in DECIMAL_COLUMNS:
        return Decimal(value)
    if column == "lastSeen":
        return dt.datetime.fromisoformat(value)
    return value


def assert_sorted(items: list[dict[str, Any]], sort: str) -> None:
    """Sorted by the column, NULLs last in both directions."""
    column = sort.lstrip("-")
    values = [sort_value(item, column) for item in items]
    present = [value for value in values if value is not None]
    assert values == present + [None] * (len(values) - len(present)), (sort, values)
    assert present == sorted(present, reverse=sort.startswith("-")), (sort, values)


def all_pages(client: Any, url: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    page = client.get(url, params).json()
    items += page["items"]
    while page["hasMore"]:
        page = client.get(url, {"cursor": page["nextCursor"], "limit": params["limit"]}).json()
        items += page["items"]
    return items


class TestCustomers:
    def test_rows_equal_the_hand_computation(self, tenant, catalog):
        record_dataset(tenant.api())
        make_customer(tenant.test, "cus_quiet")  # no events in the window: not listed
        body = tenant.api().get(CUSTOMERS).json()
        rows = {item["customerReferenceId"]: item for item in body["items"]}
        assert list(rows) == ["cus_c", "cus_a", "cus_b"]  # default sort: cost, descending
        assert totals(rows["cus_a"]) == {
            "events": 2,
            "cost": "0.3",
            "revenue": "0.4",
            "margin": "0.1",
            "marginPct": "25",
            "unpricedEvents": 0,
        }
        assert totals(rows["cus_b"]) == {
            "events": 2,
            "cost": "0.0035",
            "revenue": "0.015",
            "margin": "0.0115",
            "marginPct": "76.67",
            "unpricedEvents": 1,
        }
        assert totals(rows["cus_c"]) == {
            "events": 1,
            "cost": "0.7",
            "revenue": "0",
            "margin": "-0.7",
            "marginPct": None,
            "unpricedEvents": 0,
        }
        # The latest event in the window, to the second (not its hour).
        assert rows["cus_a"]["lastSeen"] == at(1, 11)
        assert rows["cus_b"]["lastSeen"] == at(2, 9)
        assert body["hasMore"] is False and body["nextCursor"] is None
        assert body["from"] == at(29, 0)

    def test_names_and_email_come_from_the_customer(self, tenant, catalog):
        make_customer(tenant.test, "cus_a", email="ada@example.com", first_name="Ada")
        ingest(tenant.api(), event("cus_a", cost="1"))
        item = tenant.api().get(CUSTOMERS).json()["items"][0]
        assert (item["name"], item["email"]) == ("Ada", "ada@example.com")

    def test_last_seen_is_the_precise_time(self, tenant, catalog):
        ingest(
            tenant.api(),
            event("early", cost="1", when=at(1, 10, 5, 7)),
            event("late", cost="1", when=at(1, 10, 59, 1)),
        )
        items = tenant.api().get(CUSTOMERS, {"sort": "-lastSeen"}).json()["items"]
        assert [item["customerReferenceId"] for item in items] == ["late", "early"]
        assert items[0]["lastSeen"] == at(1, 10, 59, 1)

    @pytest.mark.parametrize("sort", [*SORTS, *(f"-{name}" for name in SORTS)])
    def test_every_sort(self, tenant, catalog, sort):
        record_dataset(tenant.api())
        ingest(
            tenant.api(),
            # Two more rows with other orders: a loss-maker with revenue, and a cheap one.
            event("cus_d", "chat", cost="0.05", revenue="0.02", when=at(4, 8)),
            event("cus_d", "chat", cost="0.05", revenue="0.02", when=at(4, 8)),
            event("cus_d", "chat", cost="0.05", revenue="0.02", when=at(6, 8)),
            event("cus_e", "chat", cost="0.000001", revenue="5", when=at(1, 23, 59)),
        )
        items = tenant.api().get(CUSTOMERS, {"sort": sort}).json()["items"]
        assert len(items) == 5
        assert_sorted(items, sort)

    def test_sorts_really_differ(self, tenant, catalog):
        record_dataset(tenant.api())

        def order(sort: str) -> list[str]:
            items = tenant.api().get(CUSTOMERS, {"sort": sort}).json()["items"]
            return [item["customerReferenceId"] for item in items]

        assert order("cost") == ["cus_b", "cus_a", "cus_c"]
        assert order("-revenue") == ["cus_a", "cus_b", "cus_c"]
        assert order("-marginPct") == ["cus_b", "cus_a", "cus_c"]  # null last
        assert order("marginPct") == ["cus_a", "cus_b", "cus_c"]  # null last too
        assert order("-unpricedEvents")[0] == "cus_b"
        assert order("lastSeen") == ["cus_c", "cus_b", "cus_a"]

    def test_pages_follow_the_cursor_without_gaps_or_repeats(self, tenant, catalog):
        ingest(
            tenant.api(),
            *[event(f"cus_{n}", cost=str(n % 3), when=at(1 + n % 5)) for n in range(11)],
        )
        everything = tenant.api().get(CUSTOMERS, {"sort": "cost", "limit": 200}).json()["items"]
        paged = all_pages(tenant.api(), CUSTOMERS, {"sort": "cost", "limit": 3})
        assert [item["customerReferenceId"] for item in paged] == [
            item["customerReferenceId"] for item in everything
        ]
        assert len({item["customerReferenceId"] for item in paged}) == 11

    def test_the_cursor_keeps_its_window_and_sort(self, tenant, catalog):
        record_dataset(tenant.api())
        window = {"from": at(10, 0), "to": at(1, 11)}  # cus_a's 11:00 event is outside
        first = tenant.api().get(CUSTOMERS, {**window, "sort": "events", "limit": 1}).json()
        second = tenant.api().get(CUSTOMERS, {"cursor": first["nextCursor"], "limit": 1}).json()
        assert (second["from"], second["to"]) == (first["from"], first["to"])
        rows = [first["items"][0], second["items"][0]]
        third = tenant.api().get(CUSTOMERS, {"cursor": second["nextCursor"], "limit": 1}).json()
        rows.append(third["items"][0])
        assert third["hasMore"] is False
        assert_sorted(rows, "events")
        cus_a = next(row for row in rows if row["customerReferenceId"] == "cus_a")
        assert cus_a["events"] == 1
        # Repeating the same parameters with the cursor is fine; changing them is not.
        same = tenant.api().get(
            CUSTOMERS, {**window, "sort": "events", "limit": 1, "cursor": first["nextCursor"]}
        )
        assert same.json()["items"] == second["items"]
        for changed in ({"sort": "cost"}, {"search": "cus"}, {"from": at(9, 0)}):
            error = assert_error(
                tenant.api().get(CUSTOMERS, {"cursor": first["nextCursor"], **changed}),
                400,
                "validation_failed",
            )
            assert "cursor" in error["fields"]

    def test_search(self, tenant, catalog):
        record_dataset(tenant.api())
        make_customer(tenant.test, "cus_z", email="zed@example.com")
        ingest(tenant.api(), event("cus_z", cost="1"))
        items = tenant.api().get(CUSTOMERS, {"search": "ZED@"}).json()["items"]
        assert [item["customerReferenceId"] for item in items] == ["cus_z"]

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"sort": "name"}, "sort"),
            ({"sort": "--cost"}, "sort"),
            ({"limit": "0"}, "limit"),
            ({"limit": "x"}, "limit"),
            ({"cursor": "not a cursor"}, "cursor"),
            ({"cursor": "eyJvIjotMX0"}, "cursor"),  # {"o":-1}
            ({"format": "xml"}, "format"),
        ],
    )
    def test_bad_parameters_are_400(self, tenant, params, field):
        error = assert_error(tenant.api().get(CUSTOMERS, params), 400, "validation_failed")
        assert field in error["fields"]

    def test_forged_cursor_offset_is_refused(self, tenant):
        from apps.analytics.params import TableQuery, Window, table_cursor

        window = Window(midnight(29), midnight(0))
        for offset in (10**30, -5):
            token = table_cursor(TableQuery("-cost", "", window), offset)
            assert_error(tenant.api().get(CUSTOMERS, {"cursor": token}), 400, "validation_failed")


class TestCustomerDetail:
    def test_feature_by_model_breakdown(self, tenant, catalog):
        record_dataset(tenant.api())
        ingest(
            tenant.api(),
            event("cus_a", "search", cost="0.05", revenue="0.5", when=at(2), model="gpt-4o-mini"),
            event("cus_a", "search", cost="0.01", when=at(2)),  # names no model
        )
        body = tenant.api().get(f"{CUSTOMERS}/cus_a").json()
        assert body["customerReferenceId"] == "cus_a"
        assert totals(body) == {
            "events": 4,
            "cost": "0.36",
            "revenue": "0.9",
            "margin": "0.54",
            "marginPct": "60",
            "unpricedEvents": 0,
        }
        assert body["lastSeen"] == at(1, 11)
        features = body["features"]
        assert [f["featureKey"] for f in features] == ["chat", "search"]  # by cost
        chat, search = features
        assert totals(chat) == {
            "events": 2,
            "cost": "0.3",
            "revenue": "0.4",
            "margin": "0.1",
            "marginPct": "25",
            "unpricedEvents": 0,
        }
        assert [(m["model"], m["modelProvider"], m["events"]) for m in chat["models"]] == [
            ("gpt-4o", "openai", 2)
        ]
        assert [(m["model"], m["cost"], m["revenue"]) for m in search["models"]] == [
            ("gpt-4o-mini", "0.05", "0.5"),
            (None, "0.01", "0"),
        ]
        assert search["cost"] == "0.06"
        # The breakdown adds up to the totals.
        assert sum(Decimal(f["cost"]) for f in features) == Decimal(body["cost"])

    def test_window_applies(self, tenant, catalog):
        record_dataset(tenant.api())
        body = tenant.api().get(f"{CUSTOMERS}/cus_a", {"from": at(45, 0), "to": at(30, 0)}).json()
        assert totals(body)["cost"] == "100"
        assert body["lastSeen"] == at(40, 12)

    def test_customer_without_events_in_the_window(self, tenant):
        make_customer(tenant.test, "cus_idle")
        body = tenant.api().get(f"{CUSTOMERS}/cus_idle").json()
        assert body["events"] == 0 and body["cost"] == "0" and body["features"] == []
        assert body["lastSeen"] is None

    def test_unknown_customer_is_404(self, tenant):
        assert_error(tenant.api().get(f"{CUSTOMERS}/nobody"), 404, "not_found")
        assert_error(tenant.api().get(f"{CUSTOMERS}/{'x' * 300}"), 404, "not_found")

    def test_bad_window_is_400(self, tenant):
        make_customer(tenant.test, "cus_idle")
        assert_error(
            tenant.api().get(f"{CUSTOMERS}/cus_idle", {"to": "soon"}), 400, "validation_failed"
        )


class TestFeatures:
    def test_rows_with_their_models(self, tenant, catalog):
        record_dataset(tenant.api())
        body = tenant.api().get(FEATURES).json()
        assert [item["featureKey"] for item in body["items"]] == ["chat", "search"]
        chat, search = body["items"]
        assert totals(chat) == {
            "events": 3,
            "cost": "1",
            "revenue": "0.4",
            "margin": "-0.6",
            "marginPct": "-150",
            "unpricedEvents": 0,
        }
        assert chat["lastSeen"] == at(1, 11)
        assert [(m["model"], m["cost"]) for m in chat["models"]] == [
            ("claude-sonnet-4", "0.7"),
            ("gpt-4o", "0.3"),
        ]
        assert totals(search) == {
            "events": 2,
            "cost": "0.0035",
            "revenue": "0.015",
            "margin": "0.0115",
            "marginPct": "76.67",
            "unpricedEvents": 1,
        }
        assert [(m["model"], m["unpricedEvents"]) for m in search["models"]] == [
            ("gpt-4o", 0),
            ("mystery-1", 1),
        ]

    @pytest.mark.parametrize("sort", [*SORTS, *(f"-{name}" for name in SORTS)])
    def test_every_sort(self, tenant, catalog, sort):
        record_dataset(tenant.api())
        ingest(
            tenant.api(),
            event("cus_a", "embed", cost="0.001", revenue="0.5", when=at(9)),
            event("cus_a", "embed", cost="0.001", revenue="0.5", when=at(9)),
        )
        items = tenant.api().get(FEATURES, {"sort": sort}).json()["items"]
        assert len(items) == 3
        assert_sorted(items, sort)

    def test_pages_and_search(self, tenant, catalog):
        ingest(tenant.api(), *[event("c", f"feature_{n}", cost=f"0.{n}") for n in range(1, 6)])
        paged = all_pages(tenant.api(), FEATURES, {"sort": "-cost", "limit": 2})
        assert [item["featureKey"] for item in paged] == [f"feature_{n}" for n in range(5, 0, -1)]
        found = tenant.api().get(FEATURES, {"search": "URE_3"}).json()["items"]
        assert [item["featureKey"] for item in found] == ["feature_3"]


class TestModels:
    def test_rows_with_latency_and_price(self, tenant, catalog):
        record_dataset(tenant.api())
        body = tenant.api().get(MODELS).json()
        rows = {item["model"]: item for item in body["items"]}
        assert list(rows) == ["claude-sonnet-4", "gpt-4o", "mystery-1"]
        gpt = rows["gpt-4o"]
        assert gpt["modelProvider"] == "openai"
        assert totals(gpt) == {
            "events": 3,
            "cost": "0.3035",
            "revenue": "0.41",
            "margin": "0.1065",
            "marginPct": "25.98",
            "unpricedEvents": 0,
        }
        assert gpt["avgCostPerEvent"] == "0.101166666667"  # 0.3035 / 3, 12 places
        assert (gpt["customers"], gpt["features"]) == (2, 2)
        assert (gpt["inputTokens"], gpt["outputTokens"]) == (1000, 100)
        # durationMs 100, 200, 300: percentile_cont interpolates.
        assert gpt["latencyMs"] == {"avg": 200, "p50": 200, "p95": 290, "p99": 298}
        assert gpt["lastSeen"] == at(1, 11)
        price = gpt["priceInForce"]
        assert price["source"] == "catalog"
        assert price["catalog"]["inputCostPerMillion"] == "2.5"
        assert price["catalog"]["outputCostPerMillion"] == "10"
        assert price["discountPercent"] is None and price["customRates"] is None

        mystery = rows["mystery-1"]
        assert mystery["unpricedEvents"] == 1
        assert mystery["cost"] == "0"
        assert mystery["avgCostPerEvent"] is None
        assert mystery["priceInForce"] is None
        assert mystery["latencyMs"] == {"avg": None, "p50": None, "p95": None, "p99": None}

        claude = rows["claude-sonnet-4"]
        assert claude["modelProvider"] == "anthropic"
        assert claude["latencyMs"]["p99"] == 1000
        assert claude["priceInForce"]["catalog"]["outputCostPerMillion"] == "15"

    def test_events_naming_no_model_are_not_a_model(self, tenant, catalog):
        ingest(tenant.api(), event(cost="1"), event(cost="2", model="gpt-4o"))
        items = tenant.api().get(MODELS).json()["items"]
        assert [(item["model"], item["cost"]) for item in items] == [("gpt-4o", "2")]
        assert tenant.api().get("/api/analytics/overview").json()["models"] == 1

    def test_price_in_force_shows_the_environments_negotiated_rates(self, tenant, catalog):
        record_dataset(tenant.api())
        for body in (
            {"model": "gpt-4o", "discountPercent": "10"},
            {"model": "claude-sonnet-4", "inputCostPerMillion": "2", "outputCostPerMillion": "9"},
        ):
            response = tenant.api().post("/api/model-price-overrides", body, format="json")
            assert response.status_code == 201, response.content
        rows = {item["model"]: item for item in tenant.api().get(MODELS).json()["items"]}
        gpt = rows["gpt-4o"]["priceInForce"]
        assert (gpt["source"], gpt["discountPercent"]) == ("override_discount", "10")
        assert gpt["catalog"]["inputCostPerMillion"] == "2.5"
        claude = rows["claude-sonnet-4"]["priceInForce"]
        assert claude["source"] == "override_rate"
        assert claude["customRates"]["inputCostPerMillion"] == "2"
        assert claude["customRates"]["outputCostPerMillion"] == "9"
        # The live environment has no overrides.
        ingest(tenant.api(tenant.sk_live), event(cost="1", model="gpt-4o"))
        live = tenant.api(tenant.sk_live).get(MODELS).json()["items"][0]["priceInForce"]
        assert live["source"] == "catalog"

    @pytest.mark.parametrize("url", [CUSTOMERS, FEATURES, MODELS])
    def test_last_seen_probe_runs_per_group_not_per_rollup_row(self, tenant, catalog, url):
        """The probe of raw events must not land in the GROUP BY (once per rollup row)."""
        record_dataset(tenant.api())
        with CaptureQueriesContext(connection) as queries:
            assert tenant.api().get(url, {"sort": "lastSeen"}).status_code == 200
        grouped = [q["sql"] for q in queries.captured_queries if " GROUP BY " in q["sql"]]
        assert grouped
        for sql in grouped:
            # PostgreSQL GROUP BY select positions; the keys (at most customer or feature,
            # model, provider) come first, so a later position is a grouped expression.
            group_by = sql.split(" GROUP BY ", 1)[1].split(" ORDER BY ", 1)[0]
            assert all(int(item) <= 3 for item in group_by.split(", ")), sql

    @pytest.mark.parametrize("sort", [*SORTS, *(f"-{name}" for name in SORTS)])
    def test_every_sort(self, tenant, catalog, sort):
        record_dataset(tenant.api())
        items = tenant.api().get(MODELS, {"sort": sort}).json()["items"]
        assert len(items) == 3
        assert_sorted(items, sort)

    def test_pages(self, tenant, catalog):
        ingest(tenant.api(), *[event(cost=f"{n}", model=f"model-{n}") for n in range(1, 6)])
        paged = all_pages(tenant.api(), MODELS, {"sort": "cost", "limit": 2})
        assert [item["model"] for item in paged] == [f"model-{n}" for n in range(1, 6)]


class TestExportSelectors:
    def test_streamed_tables_equal_the_pages(self, tenant, catalog):
        """The export readers (server-side cursor, chunks) give the same rows as the pages."""
        ingest(tenant.api(), *[event(f"cus_{n}", f"f_{n % 4}", cost=f"0.{n}") for n in range(9)])
        query = table_query({"sort": "-cost"}, sorts=selectors.SORTS, default_sort="-cost")
        page = selectors.customer_table(tenant.test, query, limit=100).rows
        streamed = list(selectors.customer_table_all(tenant.test, query, chunk=2))
        assert [row.customer.reference_id for row in streamed] == [
            row.customer.reference_id for row in page
        ]
        assert [row.totals for row in streamed] == [row.totals for row in page]
        features = list(selectors.feature_table_all(tenant.test, query, chunk=3))
        assert [row.feature.key for row in features] == ["f_0", "f_3", "f_2", "f_1"]


@pytest.mark.parametrize(
    ("url", "name"),
    [
        (CUSTOMERS, lambda n: {"customer": f"cus_{n}"}),
        (FEATURES, lambda n: {"feature": f"feature_{n}"}),
        (MODELS, lambda n: {"model": f"model-{n}"}),
        ("/api/events", lambda n: {"customer": f"cus_{n}", "feature": f"feature_{n}"}),
        ("/api/customers/cus_0", lambda n: {"customer": "cus_0", "feature": f"feature_{n}"}),
    ],
)
def test_query_count_does_not_grow_with_rows(tenant, catalog, url, name):
    def record(numbers: range) -> None:
        ingest(
            tenant.api(),
            *[
                event(**{"cost": "1", "model": f"m-{n % 3}", "durationMs": 5, **name(n)})
                for n in numbers
            ],
        )

    record(range(2))
    tenant.api().get(url)  # warm the key cache
    with CaptureQueriesContext(connection) as small:
        assert tenant.api().get(url).status_code == 200
    record(range(2, 14))
    with CaptureQueriesContext(connection) as large:
        response = tenant.api().get(url)
    assert response.status_code == 200
    assert len(large.captured_queries) == len(small.captured_queries), url
