"""Keys through the API: authentication, scopes, lifecycle, budgets, isolation."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.apikeys.models import ApiKey
from apps.apikeys.services import apikey_record_spend
from tests.factories import make_customer, make_key

pytestmark = pytest.mark.django_db


def client_with(header: str, value: str) -> APIClient:
    client = APIClient()
    client.credentials(**{header: value})
    return client


def assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["requestId"] == response["X-Request-ID"]
    return body["error"]


class TestAuthentication:
    def test_bearer_and_x_api_key_both_work(self, tenant):
        for header, value in (
            ("HTTP_AUTHORIZATION", f"Bearer {tenant.sk_test}"),
            ("HTTP_X_API_KEY", tenant.sk_test),
        ):
            response = client_with(header, value).get("/api/sdk-keys/me")
            assert response.status_code == 200
            assert response.json()["environment"] == "test"
            assert response.json()["kind"] == "sk"

    def test_missing_key_is_401(self, db):
        assert_envelope(APIClient().get("/api/sdk-keys/me"), 401, "unauthorized")

    def test_unknown_key_is_401(self, db):
        response = client_with("HTTP_AUTHORIZATION", "Bearer sk_test_" + "0" * 32).get(
            "/api/sdk-keys/me"
        )
        assert_envelope(response, 401, "invalid_key")

    def test_revoked_key_is_401_at_once(self, tenant):
        api = tenant.api()
        issued = make_key(tenant.test, "obs", scopes=["usage.read"])
        assert tenant.api(issued.plaintext).get("/api/sdk-keys/me").status_code == 200
        assert api.delete(f"/api/sdk-keys/{issued.key.pk}").status_code == 200
        assert_envelope(tenant.api(issued.plaintext).get("/api/sdk-keys/me"), 401, "key_revoked")

    def test_expired_key_is_401(self, tenant):
        issued = make_key(tenant.test, "obs", scopes=["usage.read"])
        ApiKey.objects.filter(pk=issued.key.pk).update(
            expires_at=timezone.now() - dt.timedelta(seconds=1)
        )
        assert_envelope(tenant.api(issued.plaintext).get("/api/sdk-keys/me"), 401, "key_expired")

    def test_secret_is_stored_only_as_a_hash(self, tenant):
        issued = make_key(tenant.test, "sk")
        row = ApiKey.objects.get(pk=issued.key.pk)
        assert issued.plaintext.startswith("sk_test_")
        assert issued.plaintext not in {row.secret_hash, row.prefix, row.hint}
        assert len(row.secret_hash) == 64
        assert row.hint == issued.plaintext[-4:]

    def test_last_used_is_recorded_without_a_write_per_request(
        self, tenant, django_assert_max_num_queries
    ):
        issued = make_key(tenant.test, "obs", scopes=["usage.read"])
        api = tenant.api(issued.plaintext)
        api.get("/api/sdk-keys/me")
        first = ApiKey.objects.get(pk=issued.key.pk).last_used_at
        assert first is not None
        # Cached key, and the touch is gated by Redis: later calls write nothing.
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            for _ in range(5):
                api.get("/api/sdk-keys/me")
        assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
        assert ApiKey.objects.get(pk=issued.key.pk).last_used_at == first


class TestScopes:
    def test_missing_scope_is_403_naming_it(self, tenant):
        issued = make_key(tenant.test, "obs", scopes=["usage.read"])
        error = assert_envelope(
            tenant.api(issued.plaintext).get("/api/sdk-keys"), 403, "scope_denied"
        )
        assert "admin" in error["message"]
        assert error["requiredScope"] == "admin"

    def test_admin_scope_may_manage_keys(self, tenant):
        issued = make_key(tenant.test, "obs", scopes=["admin"])
        response = tenant.api(issued.plaintext).post(
            "/api/sdk-keys", {"kind": "obs", "scopes": ["events.write"]}, format="json"
        )
        assert response.status_code == 201
        assert response.json()["key"].startswith("obs_")

    def test_secret_key_holds_every_scope(self, tenant):
        body = tenant.api().get("/api/sdk-keys/me").json()
        assert "admin" in body["scopes"] and "events.write" in body["scopes"]

    def test_customer_key_cannot_manage_keys(self, tenant):
        customer = make_customer(tenant.test, "cus_9")
        issued = make_key(tenant.test, "ck", customer=customer)
        assert_envelope(tenant.api(issued.plaintext).get("/api/sdk-keys"), 403, "forbidden")
        me = tenant.api(issued.plaintext).get("/api/sdk-keys/me").json()
        assert me["customerReferenceId"] == "cus_9"
        assert me["scopes"] == ["read"]


class TestLifecycle:
    def test_create_shows_secret_once(self, tenant):
        api = tenant.api()
        created = api.post(
            "/api/sdk-keys",
            {
                "kind": "obs",
                "name": "sales",
                "scopes": ["proxy.chat"],
                "budgetCents": 4000,
                "budgetPeriod": "month",
            },
            format="json",
        )
        assert created.status_code == 201
        body = created.json()
        assert body["key"].startswith("obs_")
        assert body["budget"]["limitCents"] == 4000
        fetched = api.get(f"/api/sdk-keys/{body['id']}").json()
        assert "key" not in fetched
        listed = api.get("/api/sdk-keys").json()
        assert all("key" not in item for item in listed["items"])
        assert body["id"] in {item["id"] for item in listed["items"]}

    def test_rotate_keeps_old_key_working_until_revoked(self, tenant):
        api = tenant.api()
        issued = make_key(tenant.test, "obs", scopes=["usage.read", "events.write"])
        rotated = api.post(f"/api/sdk-keys/{issued.key.pk}/rotate")
        assert rotated.status_code == 201
        new = rotated.json()
        assert new["rotatedFromId"] == str(issued.key.pk)
        assert new["scopes"] == ["events.write", "usage.read"]
        assert tenant.api(issued.plaintext).get("/api/sdk-keys/me").status_code == 200
        assert tenant.api(new["key"]).get("/api/sdk-keys/me").status_code == 200
        api.delete(f"/api/sdk-keys/{issued.key.pk}")
        assert tenant.api(issued.plaintext).get("/api/sdk-keys/me").status_code == 401
        assert tenant.api(new["key"]).get("/api/sdk-keys/me").status_code == 200

    def test_an_expiry_beyond_the_calendar_is_400_not_500(self, tenant):
        response = tenant.api().post(
            "/api/sdk-keys",
            {"kind": "obs", "scopes": ["usage.read"], "expiresInSeconds": 10**15},
            format="json",
        )
        error = assert_envelope(response, 400, "validation_failed")
        assert "expiresInSeconds" in error["fields"]

    def test_rotating_a_revoked_key_is_a_conflict(self, tenant):
        # The key's state is wrong, not the request: 409, as the schema documents.
        api = tenant.api()
        issued = make_key(tenant.test, "obs", scopes=["usage.read"])
        api.delete(f"/api/sdk-keys/{issued.key.pk}")
        response = api.post(f"/api/sdk-keys/{issued.key.pk}/rotate")
        assert_envelope(response, 409, "key_inactive")

    def test_invalid_scope_is_400_with_field(self, tenant):
        response = tenant.api().post(
            "/api/sdk-keys", {"kind": "obs", "scopes": ["root"]}, format="json"
        )
        error = assert_envelope(response, 400, "validation_failed")
        assert "scopes" in error["fields"]

    def test_customer_key_needs_a_known_customer(self, tenant):
        response = tenant.api().post(
            "/api/sdk-keys", {"kind": "ck", "customerReferenceId": "nobody"}, format="json"
        )
        assert_envelope(response, 404, "not_found")

    def test_expires_in_seconds(self, tenant):
        response = tenant.api().post(
            "/api/sdk-keys",
            {"kind": "obs", "scopes": ["usage.read"], "expiresInSeconds": 3600},
            format="json",
        )
        expires = dt.datetime.fromisoformat(response.json()["expiresAt"])
        assert dt.timedelta(minutes=59) < expires - timezone.now() <= dt.timedelta(hours=1)


class TestBudget:
    def test_me_reports_budget_spent_remaining_and_reset(self, tenant):
        issued = make_key(
            tenant.test, "obs", scopes=["proxy.chat"], budget_cents=5000, budget_period="month"
        )
        apikey_record_spend(key=issued.key, amount_usd=Decimal("0.1"))
        apikey_record_spend(key=issued.key, amount_usd=Decimal("0.2"))
        budget = tenant.api(issued.plaintext).get("/api/sdk-keys/me").json()["budget"]
        assert budget["limitCents"] == 5000
        assert budget["spentCents"] == "30"  # 0.1 + 0.2 dollars, exactly
        assert budget["remainingCents"] == "4970"
        assert budget["period"] == "month"
        resets = dt.datetime.fromisoformat(budget["resetsAt"])
        assert resets.day == 1 and resets > timezone.now()

    def test_lifetime_budget_never_resets(self, tenant):
        issued = make_key(tenant.test, "obs", scopes=["proxy.chat"], budget_cents=100)
        budget = tenant.api(issued.plaintext).get("/api/sdk-keys/me").json()["budget"]
        assert budget["period"] is None
        assert budget["resetsAt"] is None


class TestIsolation:
    def test_outsider_cannot_see_or_touch_keys(self, tenant, outsider):
        issued = make_key(tenant.test, "obs", scopes=["usage.read"])
        spy = outsider.api()
        assert spy.get(f"/api/sdk-keys/{issued.key.pk}").status_code == 404
        assert spy.delete(f"/api/sdk-keys/{issued.key.pk}").status_code == 404
        assert spy.post(f"/api/sdk-keys/{issued.key.pk}/rotate").status_code == 404
        listed = {item["id"] for item in spy.get("/api/sdk-keys?limit=200").json()["items"]}
        assert str(issued.key.pk) not in listed
        assert tenant.api(issued.plaintext).get("/api/sdk-keys/me").status_code == 200

    def test_live_key_cannot_see_test_keys(self, tenant):
        issued = make_key(tenant.test, "obs", scopes=["usage.read"])
        live = tenant.api(tenant.sk_live)
        assert live.get(f"/api/sdk-keys/{issued.key.pk}").status_code == 404
        ids = {item["id"] for item in live.get("/api/sdk-keys").json()["items"]}
        assert str(issued.key.pk) not in ids
        assert all(
            item["environment"] == "live" for item in live.get("/api/sdk-keys").json()["items"]
        )

    def test_malformed_id_is_404_not_500(self, tenant):
        assert tenant.api().get("/api/sdk-keys/not-a-uuid").status_code == 404


def test_list_is_cursor_paginated(tenant):
    for n in range(5):
        make_key(tenant.test, "obs", scopes=["usage.read"], name=f"k{n}")
    api = tenant.api()
    first = api.get("/api/sdk-keys?limit=3").json()
    assert len(first["items"]) == 3 and first["hasMore"] is True
    second = api.get(f"/api/sdk-keys?limit=3&cursor={first['nextCursor']}").json()
    assert second["hasMore"] is False
    ids = [i["id"] for i in first["items"] + second["items"]]
    assert len(ids) == len(set(ids)) == 6  # five obs keys + the tenant's sk_test


def test_list_query_count_is_flat(tenant, django_assert_max_num_queries):
    for n in range(20):
        make_key(tenant.test, "obs", scopes=["usage.read"], name=f"k{n}", budget_cents=100)
    with django_assert_max_num_queries(8):
        response = tenant.api().get("/api/sdk-keys?limit=50")
    assert len(response.json()["items"]) == 21
