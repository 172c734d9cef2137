"""CSV exports (``?format=csv`` or ``Accept: text/csv``): the same rows as the JSON, streamed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.http import StreamingHttpResponse

from tests.analytics.conftest import (
    assert_error,
    at,
    csv_rows,
    event,
    ingest,
    record_dataset,
)
from tests.factories import make_customer

pytestmark = pytest.mark.django_db

TOTALS = (
    "events",
    "cost",
    "revenue",
    "margin",
    "marginPct",
    "unpricedEvents",
    "estimatedCost",
    "usageUnits",
)


def cell(value: Any) -> str:
    """What the CSV holds for a JSON value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def csv_of(client: Any, url: str, params: dict[str, Any] | None = None) -> list[dict[str, str]]:
    response = client.get(url, {**(params or {}), "format": "csv"})
    assert isinstance(response, StreamingHttpResponse)
    return csv_rows(response)


def test_customers_csv_matches_the_json(tenant, catalog):
    record_dataset(tenant.api())
    make_customer(tenant.test, "cus_n", first_name="Ada", last_name="Lovelace", email="a@b.co")
    ingest(tenant.api(), event("cus_n", cost="0.25", revenue="1"))
    for params in ({}, {"sort": "marginPct"}, {"from": at(45, 0), "to": at(2, 0)}):
        items = tenant.api().get("/api/customers", {**params, "limit": 200}).json()["items"]
        rows = csv_of(tenant.api(), "/api/customers", params)
        assert len(rows) == len(items) > 0
        for row, item in zip(rows, items, strict=True):
            assert set(row) == set(item)
            assert row == {key: cell(value) for key, value in item.items()}
    ada = next(
        r for r in csv_of(tenant.api(), "/api/customers") if r["customerReferenceId"] == "cus_n"
    )
    assert (ada["name"], ada["email"], ada["marginPct"]) == ("Ada Lovelace", "a@b.co", "75")


def test_csv_holds_every_row_not_one_page(tenant, catalog):
    ingest(tenant.api(), *[event(f"cus_{n}", cost="1") for n in range(7)])
    page = tenant.api().get("/api/customers", {"limit": 2}).json()
    assert page["hasMore"] is True
    rows = csv_of(tenant.api(), "/api/customers", {"limit": 2})
    assert len(rows) == 7


def test_features_csv_matches_the_json(tenant, catalog):
    record_dataset(tenant.api())
    ingest(tenant.api(), event("cus_a", "search", cost="0.01"))  # a model line with no model
    items = tenant.api().get("/api/features").json()["items"]
    rows = csv_of(tenant.api(), "/api/features")
    expected: list[dict[str, str]] = []
    for item in items:
        common = {"featureKey": item["featureKey"], "name": cell(item["name"])}
        expected.append(
            {
                "row": "feature",
                **common,
                "model": "",
                "modelProvider": "",
                **{key: cell(item[key]) for key in TOTALS},
                "lastSeen": item["lastSeen"],
            }
        )
        expected.extend(
            {
                "row": "model",
                **common,
                "model": cell(piece["model"]),
                "modelProvider": cell(piece["modelProvider"]),
                **{key: cell(piece[key]) for key in TOTALS},
                "lastSeen": "",
            }
            for piece in item["models"]
        )
    assert rows == expected
    assert [r["row"] for r in rows if r["featureKey"] == "search"] == [
        "feature",
        "model",
        "model",
        "model",
    ]


def test_models_csv_matches_the_json(tenant, catalog):
    record_dataset(tenant.api())
    tenant.api().post(
        "/api/model-price-overrides", {"model": "gpt-4o", "discountPercent": "12.5"}, format="json"
    )
    items = tenant.api().get("/api/models").json()["items"]
    rows = csv_of(tenant.api(), "/api/models")
    assert len(rows) == len(items) == 3
    for row, item in zip(rows, items, strict=True):
        price = item["priceInForce"] or {}
        catalog_price = price.get("catalog") or {}
        custom = price.get("customRates") or {}
        assert row == {
            "model": item["model"],
            "modelProvider": cell(item["modelProvider"]),
            **{key: cell(item[key]) for key in TOTALS},
            "avgCostPerEvent": cell(item["avgCostPerEvent"]),
            "customers": cell(item["customers"]),
            "features": cell(item["features"]),
            "inputTokens": cell(item["inputTokens"]),
            "outputTokens": cell(item["outputTokens"]),
            "latencyAvgMs": cell(item["latencyMs"]["avg"]),
            "latencyP50Ms": cell(item["latencyMs"]["p50"]),
            "latencyP95Ms": cell(item["latencyMs"]["p95"]),
            "latencyP99Ms": cell(item["latencyMs"]["p99"]),
            "lastSeen": item["lastSeen"],
            "priceSource": cell(price.get("source")),
            "priceVersionId": cell(catalog_price.get("priceVersionId")),
            "catalogInputCostPerMillion": cell(catalog_price.get("inputCostPerMillion")),
            "catalogOutputCostPerMillion": cell(catalog_price.get("outputCostPerMillion")),
            "discountPercent": cell(price.get("discountPercent")),
            "customInputCostPerMillion": cell(custom.get("inputCostPerMillion")),
            "customOutputCostPerMillion": cell(custom.get("outputCostPerMillion")),
        }
    gpt = next(row for row in rows if row["model"] == "gpt-4o")
    assert (gpt["priceSource"], gpt["discountPercent"]) == ("override_discount", "12.5")


def test_events_csv_matches_the_json(tenant, catalog):
    record_dataset(tenant.api())
    ingest(
        tenant.api(),
        event("cus_m", cost="0.1", meta={"stripe_customer_id": "cus_X", "n": 2, "é": "ü"}),
    )
    for params in ({}, {"customerReferenceId": "cus_b"}, {"model": "gpt-4o", "from": at(3, 0)}):
        items = tenant.api().get("/api/events", {**params, "limit": 200}).json()["items"]
        rows = csv_of(tenant.api(), "/api/events", params)
        assert len(rows) == len(items) > 0
        for row, item in zip(rows, items, strict=True):
            assert set(row) == set(item)
            for key, value in item.items():
                if key in {"meta", "flags"}:
                    assert json.loads(row[key]) == value
                else:
                    assert row[key] == cell(value), key
    assert len(csv_of(tenant.api(), "/api/events", {"customerReferenceId": "cus_b"})) == 2


def test_accept_header_asks_for_csv_too(tenant, catalog):
    record_dataset(tenant.api())
    response = tenant.api().get("/api/customers", HTTP_ACCEPT="text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="customers.csv"'
    assert len(csv_rows(response)) == 3


def test_spreadsheet_formulas_in_caller_text_are_neutralised(tenant, catalog):
    ingest(tenant.api(), event("=HYPERLINK(1)", "+feature", cost="1", eventName="@sum"))
    row = csv_of(tenant.api(), "/api/customers")[0]
    assert row["customerReferenceId"] == "'=HYPERLINK(1)"
    assert row["margin"] == "-1"  # numbers are never quoted
    event_row = csv_of(tenant.api(), "/api/events")[0]
    assert (event_row["featureKey"], event_row["eventName"]) == ("'+feature", "'@sum")


def test_errors_of_a_csv_request_are_the_json_envelope(tenant):
    error = assert_error(
        tenant.api().get("/api/customers", {"format": "csv", "sort": "bogus"}),
        400,
        "validation_failed",
    )
    assert "sort" in error["fields"]
    assert_error(
        tenant.api().get("/api/events", {"format": "csv", "from": "later"}),
        400,
        "validation_failed",
    )


def test_an_empty_events_export_still_has_the_json_fields_as_header(tenant, outsider, catalog):
    ingest(tenant.api(), event(cost="1"))
    fields = list(tenant.api().get("/api/events").json()["items"][0])
    response = outsider.api().get("/api/events", {"format": "csv"})
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()
    assert text.splitlines() == [",".join(fields)]
