"""GET /api/events (filters, keyset cursor) and GET /api/traces/{traceId}."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.analytics.params import next_event_cursor
from apps.core.api.pagination import encode_cursor
from tests.analytics.conftest import (
    CLIENT_EVENTS,
    assert_error,
    at,
    event,
    ingest,
    midnight,
    record_dataset,
)

pytestmark = pytest.mark.django_db

EVENTS = "/api/events"


def ids(client: Any, **params: Any) -> list[str]:
    response = client.get(EVENTS, params)
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["items"]]


class TestEventList:
    def test_newest_first_with_the_stored_fields(self, tenant, catalog):
        data = record_dataset(tenant.api())
        body = tenant.api().get(EVENTS).json()
        assert [item["id"] for item in body["items"]] == [
            data.e2,
            data.e1,
            data.e3,
            data.e4,
            data.e5,
            data.e6,
        ]
        e3 = body["items"][2]
        assert e3["customerReferenceId"] == "cus_b"
        assert e3["featureKey"] == "search"
        assert e3["occurredAt"] == at(2, 9)
        assert (e3["costAmount"], e3["costSource"], e3["priceVersionId"]) == (
            "0.0035",
            "catalog",
            e3["priceVersionId"],
        )
        assert e3["priceVersionId"] is not None
        assert (e3["revenueAmount"], e3["margin"]) == ("0.01", "0.0065")
        e4 = body["items"][3]
        assert (e4["costAmount"], e4["costSource"], e4["unpricedReason"]) == (
            None,
            "unpriced",
            "unknown_model",
        )
        assert e4["margin"] is None
        assert body["hasMore"] is False and body["nextCursor"] is None

    def test_each_filter(self, tenant, catalog):
        data = record_dataset(tenant.api())
        api = tenant.api()
        assert ids(api, customerReferenceId="cus_b") == [data.e3, data.e4]
        assert ids(api, customerReferenceId="nobody") == []
        assert ids(api, featureKey="chat") == [data.e2, data.e1, data.e5, data.e6]
        assert ids(api, featureKey="nothing") == []
        assert ids(api, model="gpt-4o") == [data.e2, data.e1, data.e3, data.e6]
        assert ids(api, modelProvider="anthropic") == [data.e5]
        assert ids(api, traceId="trace-1") == [data.e2, data.e1]
        assert ids(api, eventName="summarize") == [data.e2]
        assert ids(api, costSource="unpriced") == [data.e4]
        assert ids(api, costSource="catalog") == [data.e3]
        # Filters combine.
        assert ids(api, customerReferenceId="cus_a", model="gpt-4o", eventName="chat") == [
            data.e1,
            data.e6,
        ]

    def test_time_range(self, tenant, catalog):
        data = record_dataset(tenant.api())
        api = tenant.api()
        # `to` is exclusive, to the second (no widening to hours for raw events).
        assert ids(api, **{"from": at(2, 9), "to": at(1, 11)}) == [data.e1, data.e3]
        assert ids(api, **{"from": at(1, 10, 0, 1)}) == [data.e2]
        # One bound alone leaves the other end open (no 30-day default, no 400-day cap).
        assert ids(api, to=at(3, 0)) == [data.e5, data.e6]
        assert ids(api, **{"from": "2000-01-01", "to": at(4, 0)}) == [data.e5, data.e6]
        assert ids(api, to="1999-01-01") == []

    def test_cursor_walks_every_event_once_and_new_events_do_not_shift_pages(self, tenant, catalog):
        # Several events share one instant: the id breaks the tie.
        same = at(2, 12)
        recorded = ingest(tenant.api(), *[event(cost="1", when=same) for _ in range(5)])
        recorded += ingest(tenant.api(), *[event(cost="1", when=at(3)) for _ in range(2)])
        api = tenant.api()
        first = api.get(EVENTS, {"limit": 3}).json()
        assert first["hasMore"] is True
        seen = [item["id"] for item in first["items"]]
        # New events arrive between pages (newer than the cursor): no page shifts.
        ingest(api, event(cost="1", when=at(1)))
        cursor = first["nextCursor"]
        while cursor:
            page = api.get(EVENTS, {"limit": 3, "cursor": cursor}).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["nextCursor"]
        assert sorted(seen, key=int) == sorted(recorded, key=int)
        assert len(seen) == len(set(seen)) == 7

    def test_the_cursor_bounds_the_index_scan(self, tenant, catalog):
        """A plain ``occurred_at <=`` bound lets a deep page start at the cursor in the index."""
        ingest(tenant.api(), *[event(cost="1", when=at(1 + n)) for n in range(3)])
        first = tenant.api().get(EVENTS, {"limit": 1}).json()
        with CaptureQueriesContext(connection) as queries:
            tenant.api().get(EVENTS, {"limit": 1, "cursor": first["nextCursor"]})
        listing = [q["sql"] for q in queries.captured_queries if 'FROM "events_event"' in q["sql"]]
        assert any('"events_event"."occurred_at" <= ' in sql for sql in listing), listing

    def test_a_cursor_made_by_hand_is_a_keyset(self, tenant, catalog):
        data = record_dataset(tenant.api())
        # After e1 (1 day back, 10:00): the older events.
        token = next_event_cursor(midnight(1).replace(hour=10), int(data.e1))
        assert ids(tenant.api(), cursor=token) == [data.e3, data.e4, data.e5, data.e6]

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"cursor": "garbage!"}, "cursor"),
            ({"cursor": encode_cursor(["x", 1])}, "cursor"),
            ({"cursor": encode_cursor(["2026-01-01T00:00:00+00:00", 10**21])}, "cursor"),
            ({"cursor": encode_cursor(["2026-01-01T00:00:00", 5])}, "cursor"),  # naive
            ({"cursor": encode_cursor(["2026-01-01T00:00:00+00:00", 1, 2])}, "cursor"),
            ({"limit": "500"}, "limit"),
            ({"costSource": "guessed"}, "costSource"),
            ({"model": "m" * 300}, "model"),
            ({"customerReferenceId": "a\x00b"}, "customerReferenceId"),
            ({"from": "not-a-date"}, "from"),
            ({"from": "2026-02-01", "to": "2026-01-01"}, "to"),
            ({"format": "pdf"}, "format"),
        ],
    )
    def test_bad_parameters_are_400(self, tenant, params, field):
        error = assert_error(tenant.api().get(EVENTS, params), 400, "validation_failed")
        assert field in error["fields"]


class TestTrace:
    def test_events_in_order_with_totals_and_duration(self, tenant, catalog):
        api = tenant.api()
        ids_ = ingest(
            api,
            # Sent out of order; one step ends after the last one starts.
            event(
                "cus_a", "agent", when=at(1, 9, 0, 5), cost="0.2", durationMs=500, traceId="run-7"
            ),
            event(
                "cus_a",
                "agent",
                when=at(1, 9, 0, 0),
                cost="0.1",
                revenue="1",
                durationMs=4000,
                traceId="run-7",
            ),
            event(
                "cus_a",
                "agent",
                when=at(1, 9, 0, 2),
                model="mystery-9",
                inputTokens=3,
                traceId="run-7",
            ),
            event("cus_a", "agent", when=at(1, 9, 0, 3), cost="5", traceId="other"),
        )
        response = api.get("/api/traces/run-7")
        assert response.status_code == 200, response.content
        body = response.json()
        assert [item["id"] for item in body["items"]] == [ids_[1], ids_[2], ids_[0]]
        assert [item["occurredAt"] for item in body["items"]] == [
            at(1, 9, 0, 0),
            at(1, 9, 0, 2),
            at(1, 9, 0, 5),
        ]
        assert body["traceId"] == "run-7"
        assert body["events"] == 3
        assert (body["cost"], body["revenue"], body["margin"]) == ("0.3", "1", "0.7")
        assert body["unpricedEvents"] == 1
        assert body["startedAt"] == at(1, 9, 0, 0)
        # First start 09:00:00; last end is 09:00:05 + 500 ms = 09:00:05.5.
        assert body["endedAt"].startswith(at(1, 9, 0, 5)[:-1] + ".5")
        assert body["spanMs"] == 5500
        assert body["durationMsSum"] == 4500
        assert body["truncated"] is False
        assert sum(
            Decimal(item["costAmount"]) for item in body["items"] if item["costAmount"]
        ) == Decimal(body["cost"])

    def test_trace_recorded_through_the_client_api_with_flow_id(self, tenant, catalog):
        response = tenant.api().post(
            CLIENT_EVENTS,
            {
                "eventName": "step",
                "customerReferenceId": "cus_a",
                "featureKey": "agent",
                "costAmount": "0.25",
                "flowId": "flow-1",
                "occurredAt": at(1),
            },
            format="json",
        )
        assert response.status_code == 201, response.content
        body = tenant.api().get("/api/traces/flow-1").json()
        assert body["events"] == 1 and body["cost"] == "0.25"

    def test_unknown_trace_is_404(self, tenant):
        assert_error(tenant.api().get("/api/traces/nope"), 404, "not_found")
        assert_error(tenant.api().get(f"/api/traces/{'t' * 300}"), 404, "not_found")
