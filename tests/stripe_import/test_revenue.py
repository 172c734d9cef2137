"""Imported subscriptions in the Observe margins: the analytics API (and so the dashboard)
counts each subscription's recurring amount prorated to the window, spread over the
features and models the customer used by their share of cost, and the parts add up to
the subscription's revenue to the last of 12 places. Figures are computed by hand.

October 2026 (the window, 31 days), all subscriptions imported from the Stripe peer:

* acme: $30 plan x 2 seats = $60 a month, since Sep 15 (periods Sep 15 - Oct 15, 30
  days, and Oct 15 - Nov 15, 31 days). In October:
    Oct 1 - Oct 15: 14/30 of $60 = $28
    Oct 15 - Nov 1: 17/31 of $60 = $32.903225806451612903...
    total $60.903225806451612903... = 60.903225806452 (12 places, half-even)
  acme's cost (events): Oct 5 chat/gpt-4o $1, search/claude-sonnet-4 $3;
                        Oct 20 chat/gpt-4o $2, chat/claude-sonnet-4 $2.
  The first piece follows the first half's cost (1 : 3): chat/gpt-4o $7, search/claude $21;
  the second piece the second half's (2 : 2): $16.4516129032258064516... each.
    chat/gpt-4o     7 + 16.45161290322580645 = 23.45161290322580645... -> 23.451612903226
    chat/claude     16.45161290322580645...                            -> 16.451612903226
    search/claude   21                                                 -> 21
  (rounded down to 12 places, the two units left go to the largest remainders), so
    features: chat 39.903225806452, search 21;  models: gpt-4o 23.451612903226,
    claude-sonnet-4 37.451612903226;  each adds up to 60.903225806452.
* beta: $15 a month since Oct 1 (period Oct 1 - Nov 1): $15, no usage: the customer's
  revenue, attributed to no feature.
* gamma: $100 a month since Oct 1, but its events carry revenue ($5): the events'
  revenue stands, the subscription adds nothing (reference §3.8).
* delta: EUR 50 a month: imported, not counted (the margins are USD).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import Tenant
from tests.stripe_peer.fixtures import StripePeer

from .conftest import importing, monthly_plan, run_import, stripe_customer, subscribe, ts

pytestmark = pytest.mark.usefixtures("celery_worker")

OCTOBER = "from=2026-10-01&to=2026-11-01"


def _ingest(tenant: Tenant, api_key: str | None = None, *events: dict[str, Any]) -> None:
    response = tenant.api(api_key).post(
        "/api/events/ingest", {"events": list(events)}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == len(events)


def _event(
    customer: str, feature: str, when: str, cost: str, model: str = "", **extra: Any
) -> dict:
    body: dict[str, Any] = {
        "eventName": "chat",
        "customerReferenceId": customer,
        "featureKey": feature,
        "occurredAt": when,
        "costAmount": cost,
        **extra,
    }
    if model:
        body["model"] = model
        body["modelProvider"] = "openai" if model.startswith("gpt") else "anthropic"
    return body


def _seed(tenant: Tenant, peer: StripePeer) -> None:
    stripe = importing(tenant, peer)
    for reference, amount, currency, quantity, start in (
        ("acme", 3000, "usd", 2, ts(2026, 9, 15)),
        ("beta", 1500, "usd", 1, ts(2026, 10, 1)),
        ("gamma", 10000, "usd", 1, ts(2026, 10, 1)),
        ("delta", 5000, "eur", 1, ts(2026, 10, 1)),
    ):
        customer = stripe_customer(stripe, metadata={"customerReferenceId": reference})
        subscribe(
            stripe, customer, monthly_plan(stripe, amount, currency), quantity=quantity, start=start
        )
    _ingest(
        tenant,
        None,
        _event("acme", "chat", "2026-10-05T10:00:00Z", "1", "gpt-4o"),
        _event("acme", "search", "2026-10-05T11:00:00Z", "3", "claude-sonnet-4"),
        _event("acme", "chat", "2026-10-20T10:00:00Z", "2", "gpt-4o"),
        _event("acme", "chat", "2026-10-20T11:00:00Z", "2", "claude-sonnet-4"),
        _event("gamma", "reports", "2026-10-10T09:00:00Z", "1", revenueAmount="5"),
    )
    job = run_import(tenant)
    assert job["status"] == "COMPLETED" and job["failed"] == 0, job


def _by(items: list[dict], key: str) -> dict[str, dict]:
    return {item[key]: item for item in items}


def test_observe_margins_include_the_imported_subscriptions(
    tenant: Tenant, peer: StripePeer, web: Any
) -> None:
    _seed(tenant, peer)
    api = tenant.api()

    customers = _by(api.get(f"/api/customers?{OCTOBER}").json()["items"], "customerReferenceId")
    acme, beta, gamma = customers["acme"], customers["beta"], customers["gamma"]
    assert (acme["revenue"], acme["cost"], acme["margin"]) == (
        "60.903225806452",
        "8",
        "52.903225806452",
    )
    assert (beta["revenue"], beta["cost"], beta["margin"], beta["events"]) == ("15", "0", "15", 0)
    assert (gamma["revenue"], gamma["cost"], gamma["margin"]) == ("5", "1", "4")
    assert "delta" not in customers  # EUR: not counted, and no events

    features = _by(api.get(f"/api/features?{OCTOBER}").json()["items"], "featureKey")
    assert features["chat"]["revenue"] == "39.903225806452"
    assert features["search"]["revenue"] == "21"
    assert features["reports"]["revenue"] == "5"
    chat_models = _by(features["chat"]["models"], "model")
    assert chat_models["gpt-4o"]["revenue"] == "23.451612903226"
    assert chat_models["claude-sonnet-4"]["revenue"] == "16.451612903226"

    models = _by(api.get(f"/api/models?{OCTOBER}").json()["items"], "model")
    assert models["gpt-4o"]["revenue"] == "23.451612903226"
    assert models["claude-sonnet-4"]["revenue"] == "37.451612903226"

    # Every view of acme's subscription adds up to its revenue exactly.
    subscription = Decimal("60.903225806452")
    assert (
        Decimal(features["chat"]["revenue"]) + Decimal(features["search"]["revenue"])
        == subscription
    )
    assert sum(Decimal(m["revenue"]) for m in models.values()) == subscription
    detail = api.get(f"/api/customers/acme?{OCTOBER}").json()
    assert detail["revenue"] == "60.903225806452" and detail["margin"] == "52.903225806452"
    slices = {
        (feature["featureKey"], piece["model"]): piece["revenue"]
        for feature in detail["features"]
        for piece in feature["models"]
    }
    assert slices == {
        ("chat", "gpt-4o"): "23.451612903226",
        ("chat", "claude-sonnet-4"): "16.451612903226",
        ("search", "claude-sonnet-4"): "21",
    }

    overview = api.get(f"/api/analytics/overview?{OCTOBER}").json()
    # acme 60.903225806452 + beta 15 + gamma's events 5.
    assert overview["revenue"] == "80.903225806452"
    assert overview["cost"] == "9" and overview["margin"] == "71.903225806452"
    daily = {day["date"]: Decimal(day["revenue"]) for day in overview["daily"]}
    assert sum(daily.values()) == Decimal("80.903225806452")
    # Oct 1: acme's first period ($60 / 30 days) and beta's ($15 / 31 days), to 12 places.
    assert abs(daily["2026-10-01"] - (2 + Decimal(15) / 31)) < Decimal("1e-12")

    # The CSV exports carry them too.
    exported = b"".join(api.get(f"/api/customers?{OCTOBER}&format=csv").streaming_content)
    assert b"acme,,,4,8,60.903225806452,52.903225806452," in exported
    exported = b"".join(api.get(f"/api/features?{OCTOBER}&format=csv").streaming_content)
    assert b"39.903225806452" in exported and b"23.451612903226" in exported

    # The dashboard shows the same numbers (October: its custom range, last day included).
    october = "from=2026-10-01&to=2026-10-31"
    page = web.get(f"/dashboard/?{october}").content.decode()
    assert 'data-revenue="80.903225806452"' in page
    page = web.get(f"/dashboard/customers/?{october}").content.decode()
    assert re.search(r'data-customer="acme"[^>]*data-revenue="60.903225806452"', page)
    assert re.search(r'data-customer="beta"[^>]*data-revenue="15"', page)
    page = web.get(f"/dashboard/customers/acme?{october}").content.decode()
    assert 'data-testid="customer-totals" data-customer="acme"' in page
    assert re.search(r'data-customer="acme"[^>]*data-revenue="60.903225806452"', page)
    assert re.search(
        r'data-feature="chat" data-model="gpt-4o"[^>]*data-revenue="23.451612903226"', page
    )


def test_a_window_inside_one_period_and_other_tenants(
    tenant: Tenant, outsider: Tenant, peer: StripePeer
) -> None:
    """Oct 16 - Oct 26: 10 of acme's 31-day period = $600/31 = 19.354838709677...; no
    usage in the window (acme's events are on Oct 5 and 20 -> Oct 20 is in it: chat, 2 x
    $2): shares 1 : 1. The live environment and another organization see none of it."""
    _seed(tenant, peer)
    window = "from=2026-10-16&to=2026-10-26"
    acme = tenant.api().get(f"/api/customers/acme?{window}").json()
    assert acme["revenue"] == "19.354838709677"  # 19.3548387096774193... half-even
    slices = [piece["revenue"] for feature in acme["features"] for piece in feature["models"]]
    assert sorted(slices) == ["9.677419354838", "9.677419354839"]
    for client in (tenant.api(tenant.sk_live), outsider.api()):
        assert client.get(f"/api/customers?{OCTOBER}").json()["items"] == []
        overview = client.get(f"/api/analytics/overview?{OCTOBER}").json()
        assert overview["revenue"] == "0"
