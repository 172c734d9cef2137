"""Every Observe page shows the read API's numbers for the same window.

The dataset is ingested through the API; each page's figures (read from the
``data-*`` attributes of its cells) are compared with GET /api/analytics/overview,
/api/customers, /api/features, /api/models for the window the page says it shows.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from .html import find_all, find_one

pytestmark = pytest.mark.django_db


def dec(text: str | None) -> Decimal | None:
    return None if text in (None, "") else Decimal(text)


def page_window(content: bytes) -> dict[str, str]:
    shown = find_one(content, data_testid="window")
    return {"from": shown["data-from"], "to": shown["data-to"]}


def api_get(tenant: Any, path: str, **params: str) -> dict[str, Any]:
    response = tenant.api().get(path, params)
    assert response.status_code == 200, response.content
    return response.json()


TOTALS = (("data-cost", "cost"), ("data-revenue", "revenue"), ("data-margin", "margin"))


def assert_totals(cell: dict[str, str], item: dict[str, Any]) -> None:
    for attribute, key in TOTALS:
        assert dec(cell[attribute]) == dec(item[key]), (attribute, cell, item)
    assert dec(cell["data-margin-pct"]) == dec(item["marginPct"]), (cell, item)
    if "data-events" in cell:
        assert int(cell["data-events"]) == item["events"]
    if "data-unpriced" in cell:
        assert int(cell["data-unpriced"]) == item["unpricedEvents"]


@pytest.mark.parametrize("query", ["", "?range=7", "?range=90", "?from=2020-01-01&to=2020-01-31"])
def test_overview_equals_the_api_for_the_same_window(tenant, web, dataset, query):
    content = web.get(f"/dashboard/{query}").content
    window = page_window(content)
    api = api_get(tenant, "/api/analytics/overview", **window)
    shown = find_one(content, "section", data_testid="overview")
    assert_totals(shown, api)
    for name in ("customers", "features", "models"):
        assert int(shown[f"data-{name}"]) == api[name]
    daily = find_all(content, "tr", data_date=None)
    assert [row["data-date"] for row in daily] == [day["date"] for day in api["daily"]]
    for row, day in zip(daily, api["daily"], strict=True):
        assert dec(row["data-cost"]) == dec(day["cost"])
        assert dec(row["data-revenue"]) == dec(day["revenue"])


def test_overview_figures_of_the_default_window(tenant, web, dataset):
    """Hand-computed: e1..e6 are in the last 30 days (e7, 40 days back, is not)."""
    content = web.get("/dashboard/").content
    shown = find_one(content, "section", data_testid="overview")
    # cost 0.1 + 0.2 + 0.0035 (catalog) + 0.7 + 0.01; e4 unpriced; revenue 0.3+0.1+0.01+0.005+1
    assert dec(shown["data-cost"]) == Decimal("1.0135")
    assert dec(shown["data-revenue"]) == Decimal("1.415")
    assert dec(shown["data-margin"]) == Decimal("0.4015")
    assert shown["data-unpriced"] == "1"
    banner = find_one(content, data_testid="unpriced-banner")
    assert banner["data-unpriced"] == "1"
    assert b'href="/dashboard/settings/model-prices/"' in content


def test_overview_compares_with_the_previous_window_of_the_same_length(tenant, web, dataset):
    content = web.get("/dashboard/?range=30").content
    window = page_window(content)
    # The previous window: the 30 days that end where this one starts.
    previous = api_get(
        tenant,
        "/api/analytics/overview",
        **{"from": _days_before(window["from"], 30), "to": window["from"]},
    )
    kpis = {kpi["data-kpi"]: kpi for kpi in find_all(content, "article", data_kpi=None)}
    assert dec(kpis["cost"]["data-previous"]) == dec(previous["cost"]) == Decimal(100)
    assert dec(kpis["revenue"]["data-previous"]) == dec(previous["revenue"]) == 0
    assert dec(kpis["margin"]["data-previous"]) == Decimal(-100)
    # Cost went down: shown as a good change.
    assert b'data-kpi="cost"' in content
    cost_block = content.split(b'data-kpi="cost"')[1].split(b"</article>")[0]
    assert b"tone-good" in cost_block and b'data-trend="down"' in cost_block


def _days_before(iso: str, days: int) -> str:
    import datetime as dt

    return (dt.datetime.fromisoformat(iso) - dt.timedelta(days=days)).isoformat()


@pytest.mark.parametrize(
    "sort", ["-cost", "cost", "margin", "-marginPct", "marginPct", "-events", "-lastSeen"]
)
def test_customers_table_equals_the_api(tenant, web, dataset, sort):
    content = web.get(f"/dashboard/customers/?sort={sort}").content
    window = page_window(content)
    api = api_get(tenant, "/api/customers", sort=sort, **window)
    rows = find_all(content, "tr", data_customer=None)
    assert [row["data-customer"] for row in rows] == [
        item["customerReferenceId"] for item in api["items"]
    ]
    for row, item in zip(rows, api["items"], strict=True):
        assert_totals(row, item)


def test_customers_search_and_window(tenant, web, dataset):
    content = web.get("/dashboard/customers/?q=cus_b&range=7").content
    window = page_window(content)
    api = api_get(tenant, "/api/customers", search="cus_b", **window)
    rows = find_all(content, "tr", data_customer=None)
    assert [row["data-customer"] for row in rows] == ["cus_b"]
    assert_totals(rows[0], api["items"][0])
    # The 40-day-old event is only in a 90-day window.
    wide = web.get("/dashboard/customers/?range=90&q=cus_a").content
    (row,) = find_all(wide, "tr", data_customer="cus_a")
    assert dec(row["data-cost"]) == Decimal("100.3")


def test_customers_table_pages(tenant, web, dataset, monkeypatch):
    from apps.dashboard.views import observe

    monkeypatch.setattr(observe, "PAGE_SIZE", 2)
    first = web.get("/dashboard/customers/").content
    second = web.get("/dashboard/customers/?page=2").content
    names = [r["data-customer"] for r in find_all(first, "tr", data_customer=None)]
    names += [r["data-customer"] for r in find_all(second, "tr", data_customer=None)]
    api = api_get(tenant, "/api/customers", **page_window(first))
    assert names == [item["customerReferenceId"] for item in api["items"]]
    assert b'rel="next"' in first and b'rel="prev"' in second and b'rel="next"' not in second


def test_customer_page_equals_the_api(tenant, web, dataset):
    content = web.get("/dashboard/customers/cus_a?range=7").content
    window = page_window(content)
    api = api_get(tenant, "/api/customers/cus_a", **window)
    assert_totals(find_one(content, "section", data_testid="customer-totals"), api)
    groups = find_all(content, "tr", data_feature=None, data_model=None)
    slices = [(f["featureKey"], m) for f in api["features"] for m in f["models"]]
    assert len(groups) == len(slices)
    for row, (feature, piece) in zip(groups, slices, strict=True):
        assert row["data-feature"] == feature
        assert row["data-model"] == (piece["model"] or "")
        assert dec(row["data-cost"]) == dec(piece["cost"])
        assert dec(row["data-revenue"]) == dec(piece["revenue"])
    # Recent events of this customer only (e7 is older than the window but still recent).
    ids = {int(r["data-event-id"]) for r in find_all(content, "tr", data_event_id=None)}
    assert ids == {dataset.e1, dataset.e2, dataset.e7}
    # A clear place for plan and status until subscriptions land.
    assert find_one(content, data_testid="plan")


def test_features_table_equals_the_api(tenant, web, dataset):
    content = web.get("/dashboard/features/").content
    window = page_window(content)
    api = api_get(tenant, "/api/features", **window)
    overview = api_get(tenant, "/api/analytics/overview", **window)
    rows = find_all(content, "tr", data_feature=None)
    assert [r["data-feature"] for r in rows] == [i["featureKey"] for i in api["items"]]
    for row, item in zip(rows, api["items"], strict=True):
        assert_totals(row, item)
        share = Decimal(item["cost"]) * 100 / Decimal(overview["cost"])
        assert abs(dec(row["data-share"]) - share) <= Decimal("0.05")
    chat = find_one(content, "tr", data_feature="chat")
    # chat: 0.1 + 0.2 + 0.7 + 0.01 over 4 priced events
    assert dec(chat["data-cost-per-event"]) == Decimal("0.2525")


def test_models_table_equals_the_api(tenant, web, dataset):
    content = web.get("/dashboard/models/").content
    window = page_window(content)
    api = api_get(tenant, "/api/models", **window)
    rows = find_all(content, "tr", data_model=None)
    assert [(r["data-provider"], r["data-model"]) for r in rows] == [
        (i["modelProvider"] or "", i["model"]) for i in api["items"]
    ]
    for row, item in zip(rows, api["items"], strict=True):
        assert_totals(row, item)
        assert dec(row["data-cost-per-event"]) == dec(item["avgCostPerEvent"])
        p50 = item["latencyMs"]["p50"]
        assert (Decimal(row["data-p50"]) if row["data-p50"] else None) == (
            Decimal(str(p50)) if p50 is not None else None
        )
        assert row["data-price-source"] == (
            item["priceInForce"]["source"] if item["priceInForce"] else "unpriced"
        )
    assert find_one(content, "tr", data_model="mystery-1")["data-price-source"] == "unpriced"


def test_heatmap_cells_are_customer_feature_margins(tenant, web, dataset):
    content = web.get("/dashboard/heatmap/").content
    window = page_window(content)
    assert find_all(content, "td", data_band="healthy")
    for ref in ("cus_a", "cus_b", "cus_c", "cus_d"):
        detail = api_get(tenant, f"/api/customers/{ref}", **window)
        row_html = content.split(f'data-customer="{ref}"'.encode())[1].split(b"</tr>")[0]
        for feature in detail["features"]:
            (cell,) = find_all(row_html, "td", data_feature=feature["featureKey"])
            assert dec(cell["data-cost"]) == dec(feature["cost"])
            assert dec(cell["data-revenue"]) == dec(feature["revenue"])
    # cus_c spends on chat with no revenue: a loss; cus_d earns 99%: healthy.
    cus_c = content.split(b'data-customer="cus_c"')[1].split(b"</tr>")[0]
    assert find_one(cus_c, "td", data_feature="chat")["data-band"] == "loss"
    cus_d = content.split(b'data-customer="cus_d"')[1].split(b"</tr>")[0]
    assert find_one(cus_d, "td", data_feature="chat")["data-band"] == "healthy"
    assert find_one(cus_d, "td", data_feature="search")["data-band"] == "unknown"


def test_overview_top_tables_flag_the_largest_loss(tenant, web, dataset):
    content = web.get("/dashboard/").content
    block = content.split(b'data-testid="top-customers-margin"')[1].split(b"</article>")[0]
    rows = find_all(block, "tr", data_customer=None)
    # Lowest margin first: cus_c loses 0.7 with no revenue.
    assert rows[0]["data-customer"] == "cus_c"
    assert rows[0]["data-band"] == "loss"
    assert rows[0].get("data-largest-loss") == "true"
    assert b"largest loss" in block
    by_cost = content.split(b'data-testid="top-customers-cost"')[1].split(b"</article>")[0]
    assert [r["data-customer"] for r in find_all(by_cost, "tr", data_customer=None)][:2] == [
        "cus_c",
        "cus_a",
    ]


def test_bad_window_and_sort_fall_back_without_failing(tenant, web, dataset):
    for query in (
        "?range=13",
        "?from=not-a-date",
        "?from=2026-02-01&to=2026-01-01",
        "?from=2000-01-01&to=2026-01-01",
        "?sort=--cost",
        "?sort=nonsense&page=-4",
        "?page=99999999999999999999",
        "?q=%00",
    ):
        for page in ("/dashboard/", "/dashboard/customers/", "/dashboard/features/"):
            response = web.get(page + query)
            assert response.status_code == 200, (page, query)
