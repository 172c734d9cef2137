"""GET /api/plan: the account's plan, limits and this month's usage, per environment."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.factories import make_customer, make_key

pytestmark = pytest.mark.django_db


def send(api, key: str, cost: str) -> None:
    body = {
        "eventIdempotencyKey": key,
        "eventName": "chat",
        "customerReferenceId": "cus_1",
        "featureKey": "ai_chat",
        "costAmount": cost,
    }
    assert api.post("/api/v1/client/events", body, format="json").status_code == 201


def feature(plan: dict, name: str) -> dict:
    return next(f for f in plan["features"] if f["feature"] == name)


def test_reports_this_months_usage_as_unlimited(tenant):
    api = tenant.api()
    send(api, "a", "0.10")
    send(api, "b", "0.20")
    plan = api.get("/api/plan").json()
    assert plan["plan"]["key"] == "self_hosted"
    assert plan["environment"] == "test"
    assert feature(plan, "events") == {
        "feature": "events",
        "used": 2,
        "limit": None,
        "remaining": None,
        "unlimited": True,
    }
    assert Decimal(plan["usage"]["cost"]) == Decimal("0.3")
    assert plan["period"]["start"] < plan["period"]["end"]


def test_other_environment_and_outsider_see_only_their_own(tenant, outsider):
    send(tenant.api(), "a", "0.10")
    assert feature(tenant.api(tenant.sk_live).get("/api/plan").json(), "events")["used"] == 0
    assert feature(outsider.api().get("/api/plan").json(), "events")["used"] == 0


def test_needs_a_key(client):
    response = client.get("/api/plan")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_needs_usage_read_and_is_never_for_a_customer_key(tenant):
    """The month's cost and revenue are the company's: a gateway-only key or an end
    customer's key must not read them."""
    # The public page's signup key (usage.read, events.write, proxy.chat) reads its plan.
    signup_like = make_key(tenant.test, "obs", scopes=["usage.read", "events.write", "proxy.chat"])
    assert tenant.api(signup_like.plaintext).get("/api/plan").status_code == 200

    gateway_only = make_key(tenant.test, "obs", scopes=["proxy.chat"]).plaintext
    response = tenant.api(gateway_only).get("/api/plan")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_denied"

    customer = make_customer(tenant.test, "cus_1")
    ck = make_key(tenant.test, "ck", customer=customer, scopes=["read", "purchase"]).plaintext
    response = tenant.api(ck).get("/api/plan")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
