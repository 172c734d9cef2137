"""GET /api/plan: the account's plan, limits and this month's usage, per environment."""

from __future__ import annotations

from decimal import Decimal

import pytest

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
