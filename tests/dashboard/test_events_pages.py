"""The events page: filters, the live tail (only new rows), how a cost was found,
CSV export of what is filtered, and the trace view."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.pricing.services import override_create

from .conftest import at, event, ingest
from .html import find_all, find_one

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def shown_ids(content: bytes) -> list[int]:
    return [int(row["data-event-id"]) for row in find_all(content, "tr", data_event_id=None)]


def test_events_newest_first_like_the_api(tenant, web, dataset):
    content = web.get("/dashboard/events/").content
    api = tenant.api().get("/api/events").json()
    assert shown_ids(content) == [int(item["id"]) for item in api["items"]]
    assert dataset.e7 in shown_ids(content)  # no default window on the raw list


@pytest.mark.parametrize(
    "case",
    [
        ("customer=cus_b", "customerReferenceId=cus_b", {"e3", "e4"}),
        ("feature=search", "featureKey=search", {"e3", "e4"}),
        (
            "model=gpt-4o&provider=openai",
            "model=gpt-4o&modelProvider=openai",
            {"e1", "e2", "e3", "e7"},
        ),
        ("trace=t-1", "traceId=t-1", {"e1", "e2"}),
        ("event_name=summarize", "eventName=summarize", {"e2"}),
        ("customer=cus_a&since=7d", None, {"e1", "e2"}),
        ("customer=nobody", "customerReferenceId=nobody", set()),
    ],
)
def test_filters(tenant, web, dataset, case):
    query, api_query, expected = case
    content = web.get(f"/dashboard/events/?{query}").content
    assert set(shown_ids(content)) == {getattr(dataset, name) for name in expected}
    if api_query:
        api = tenant.api().get(f"/api/events?{api_query}").json()
        assert shown_ids(content) == [int(item["id"]) for item in api["items"]]


def test_time_range_filter(tenant, web, dataset):
    start, end = at(3, 0)[:16], at(1, 10, 30)[:16]  # datetime-local values, UTC
    content = web.get(f"/dashboard/events/?start={start}&end={end}").content
    assert set(shown_ids(content)) == {dataset.e1, dataset.e3, dataset.e4}
    # A reversed range is reported and left out, never a 500.
    # The valid bound ("from" 1 day back, 10:30) still applies.
    response = web.get(f"/dashboard/events/?start={end}&end={start}&customer=cus_a")
    assert response.status_code == 200
    assert b"not valid" in response.content
    assert shown_ids(response.content) == [dataset.e2]


def test_live_tail_returns_only_new_rows(tenant, web, dataset):
    page = web.get("/dashboard/events/").content
    poller = find_one(page, "tbody", id="tail")
    newest = int(poller["data-after"])
    assert newest == max(dataset.ids)
    tail_url = poller["hx-get"]
    assert web.get(tail_url, **HTMX).status_code == 204  # nothing new yet

    (new_id,) = ingest(
        tenant.api(),
        event("cus_new", "chat", when=timezone.now().isoformat(), cost="0.5", revenue="2"),
    )
    response = web.get(tail_url, **HTMX)
    assert response.status_code == 200
    assert shown_ids(response.content) == [new_id]
    assert b"<html" not in response.content
    # The answer carries the next poller, which tails from the new row.
    assert int(find_one(response.content, "tbody", id="tail")["data-after"]) == new_id
    assert (
        web.get(find_one(response.content, "tbody", id="tail")["hx-get"], **HTMX).status_code == 204
    )


def test_live_tail_keeps_the_filters(tenant, web, dataset):
    page = web.get("/dashboard/events/?customer=cus_b").content
    tail_url = find_one(page, "tbody", id="tail")["hx-get"]
    assert "customer=cus_b" in tail_url
    now = timezone.now().isoformat()
    _other, mine = ingest(
        tenant.api(),
        event("cus_a", "chat", when=now, cost="0.1"),
        event("cus_b", "chat", when=now, cost="0.1"),
    )
    assert shown_ids(web.get(tail_url, **HTMX).content) == [mine]


def test_older_pages_do_not_tail(tenant, web, dataset, monkeypatch):
    from apps.dashboard.views import observe

    monkeypatch.setattr(observe, "EVENTS_PAGE_SIZE", 3)
    first = web.get("/dashboard/events/").content
    assert find_all(first, "tbody", id="tail")
    older = find_one(first, "a", rel="next")["href"]
    second = web.get(f"/dashboard/events/{older}").content
    assert not find_all(second, "tbody", id="tail")
    api = tenant.api().get("/api/events").json()
    assert shown_ids(first) + shown_ids(second) == [int(item["id"]) for item in api["items"]][:6]


def test_how_a_cost_was_found(tenant, web, dataset):
    catalog = web.get(f"/dashboard/events/{dataset.e3}/").content.decode()
    block = find_one(catalog, data_testid=f"provenance-{dataset.e3}")
    assert block["data-cost-source"] == "catalog"
    assert block["data-price-version"]  # the version used is recorded and shown
    assert "openai/gpt-4o" in catalog and "Model price catalog" in catalog
    assert "0.0035" in catalog  # exact cost

    unpriced = web.get(f"/dashboard/events/{dataset.e4}/").content.decode()
    assert "Unknown" in unpriced and "No price for this model" in unpriced

    override_create(environment=tenant.test, model="gpt-4o", discount_percent=Decimal("20"))
    (discounted,) = ingest(
        tenant.api(),
        event("cus_a", "chat", when=at(1, 13), model="gpt-4o", inputTokens=1000, outputTokens=100),
    )
    page = web.get(f"/dashboard/events/{discounted}/").content.decode()
    assert find_one(page, data_testid=f"provenance-{discounted}")["data-cost-source"] == (
        "override_discount"
    )
    assert "20.0% off the catalog" in page
    assert "0.0028" in page  # 0.0035 less 20%


def test_csv_export_of_what_is_filtered(tenant, web, dataset):
    response = web.get("/dashboard/export/events.csv?customer=cus_a&model=gpt-4o")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [int(row["id"]) for row in rows] == [dataset.e2, dataset.e1, dataset.e7]
    assert {row["customerReferenceId"] for row in rows} == {"cus_a"}
    api = tenant.api().get("/api/events?format=csv&customerReferenceId=cus_a&model=gpt-4o")
    assert b"".join(api.streaming_content) == b"".join(
        web.get("/dashboard/export/events.csv?customer=cus_a&model=gpt-4o").streaming_content
    )


def test_table_csv_exports_equal_the_api(tenant, web, dataset):
    page = web.get("/dashboard/customers/?range=7").content
    window = find_one(page, data_testid="window")
    link = find_one(page, "a", download="")["href"]
    mine = b"".join(web.get(link).streaming_content)
    api = tenant.api().get(
        "/api/customers", {"format": "csv", "from": window["data-from"], "to": window["data-to"]}
    )
    assert mine == b"".join(api.streaming_content)
    assert b"cus_a" in mine and b"cus_d" not in mine  # cus_d is 10 days back


def test_trace_page_equals_the_api(tenant, web, dataset):
    content = web.get("/dashboard/traces/t-1").content
    api = tenant.api().get("/api/traces/t-1").json()
    totals = find_one(content, "section", data_testid="trace-totals")
    assert Decimal(totals["data-cost"]) == Decimal(api["cost"])
    assert Decimal(totals["data-revenue"]) == Decimal(api["revenue"])
    assert int(totals["data-events"]) == api["events"]
    assert int(totals["data-span-ms"]) == api["spanMs"]
    assert shown_ids(content) == [int(item["id"]) for item in api["items"]]
    assert web.get("/dashboard/traces/no-such-trace").status_code == 404
