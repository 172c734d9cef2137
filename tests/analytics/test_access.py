"""Who may read what: scopes, key kinds, and tenant isolation (other org, other environment)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.analytics.conftest import assert_error, csv_rows, event, ingest, record_dataset
from tests.factories import make_customer, make_key

pytestmark = pytest.mark.django_db

# (url, the scope it needs)
ROUTES = [
    ("/api/analytics/overview", "usage.read"),
    ("/api/customers", "customers.read"),
    ("/api/customers/cus_a", "customers.read"),
    ("/api/features", "usage.read"),
    ("/api/models", "models.read"),
    ("/api/events", "events.read"),
    ("/api/traces/trace-1", "events.read"),
]
EXPORTS = ["/api/customers", "/api/features", "/api/models", "/api/events"]


def client_for(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


class TestScopes:
    @pytest.mark.parametrize(("url", "scope"), ROUTES)
    def test_a_key_with_the_scope_reads(self, tenant, catalog, url, scope):
        record_dataset(tenant.api())
        key = make_key(tenant.test, "obs", scopes=[scope]).plaintext
        response = client_for(key).get(url)
        assert response.status_code == 200, response.content

    @pytest.mark.parametrize(("url", "scope"), ROUTES)
    def test_a_key_without_the_scope_is_denied(self, tenant, catalog, url, scope):
        record_dataset(tenant.api())
        others = ["usage.read", "customers.read", "events.read", "models.read"]
        others.remove(scope)
        key = make_key(tenant.test, "obs", scopes=[*others, "events.write"]).plaintext
        error = assert_error(client_for(key).get(url), 403, "scope_denied")
        assert error["requiredScope"] == scope

    @pytest.mark.parametrize("url", EXPORTS)
    def test_exports_need_the_same_scope(self, tenant, catalog, url):
        key = make_key(tenant.test, "obs", scopes=["events.write"]).plaintext
        assert_error(client_for(key).get(url, {"format": "csv"}), 403, "scope_denied")

    def test_customer_keys_are_refused(self, tenant, catalog):
        record_dataset(tenant.api())
        customer = make_customer(tenant.test, "cus_pinned")
        key = make_key(tenant.test, "ck", customer=customer, scopes=["read"]).plaintext
        for url, _scope in ROUTES:
            assert_error(client_for(key).get(url), 403, "forbidden")

    def test_no_key_is_401(self, db):
        for url, _scope in ROUTES:
            assert_error(APIClient().get(url), 401, "unauthorized")


def assert_sees_nothing(client: Any) -> None:
    overview = client.get("/api/analytics/overview").json()
    assert (overview["events"], overview["cost"], overview["revenue"]) == (0, "0", "0")
    assert (overview["customers"], overview["features"], overview["models"]) == (0, 0, 0)
    assert overview["unpricedEvents"] == 0
    assert all(day["events"] == 0 for day in overview["daily"])
    for url in ("/api/customers", "/api/features", "/api/models", "/api/events"):
        body = client.get(url).json()
        assert body["items"] == [] and body["hasMore"] is False, url
        assert csv_rows(client.get(url, {"format": "csv"})) == [], url
    assert client.get("/api/events", {"customerReferenceId": "cus_a"}).json()["items"] == []
    assert client.get("/api/events", {"traceId": "trace-1"}).json()["items"] == []
    assert client.get("/api/customers", {"search": "cus_a"}).json()["items"] == []
    assert_error(client.get("/api/customers/cus_a"), 404, "not_found")
    assert_error(client.get("/api/traces/trace-1"), 404, "not_found")


class TestIsolation:
    def test_another_organization_sees_nothing(self, tenant, outsider, catalog):
        record_dataset(tenant.api())
        assert_sees_nothing(outsider.api())
        assert_sees_nothing(outsider.api(outsider.sk_live))

    def test_the_other_environment_sees_nothing(self, tenant, catalog):
        record_dataset(tenant.api())
        assert_sees_nothing(tenant.api(tenant.sk_live))

    def test_same_names_elsewhere_do_not_mix(self, tenant, outsider, catalog):
        """The outsider uses the same customer, feature, model and trace names."""
        record_dataset(tenant.api())
        before = tenant.api().get("/api/analytics/overview").json()
        for client in (outsider.api(), tenant.api(tenant.sk_live)):
            ingest(
                client,
                event(
                    "cus_a",
                    "chat",
                    cost="1000",
                    revenue="1",
                    model="gpt-4o",
                    traceId="trace-1",
                    durationMs=99999,
                ),
            )
        after = tenant.api().get("/api/analytics/overview").json()
        assert after == before
        detail = tenant.api().get("/api/customers/cus_a").json()
        assert detail["cost"] == "0.3"
        trace = tenant.api().get("/api/traces/trace-1").json()
        assert trace["events"] == 2 and trace["cost"] == "0.3"
        gpt = next(
            item
            for item in tenant.api().get("/api/models").json()["items"]
            if item["model"] == "gpt-4o"
        )
        assert gpt["cost"] == "0.3035" and gpt["latencyMs"]["p99"] == 298
        # And the outsider sees only its own event.
        mine = outsider.api().get("/api/customers/cus_a").json()
        assert (mine["events"], mine["cost"]) == (1, "1000")
        events = outsider.api().get("/api/events").json()["items"]
        assert [item["costAmount"] for item in events] == ["1000"]
