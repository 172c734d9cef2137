"""Customer-pinned keys under /api/v1/client/customers/{ref}/keys."""

from __future__ import annotations

import pytest

from tests.factories import make_customer, make_key

pytestmark = pytest.mark.django_db


def test_issue_list_rotate_revoke(tenant):
    make_customer(tenant.test, "cus_42")
    api = tenant.api()
    created = api.post(
        "/api/v1/client/customers/cus_42/keys", {"scopes": ["read", "purchase"]}, format="json"
    )
    assert created.status_code == 201
    body = created.json()
    assert body["apiKey"].startswith("ck_test_") and body["scopes"] == ["read", "purchase"]
    me = tenant.api(body["apiKey"]).get("/api/sdk-keys/me").json()
    assert me["customerReferenceId"] == "cus_42"

    listed = api.get("/api/v1/client/customers/cus_42/keys").json()["items"]
    assert [k["id"] for k in listed] == [body["id"]] and "apiKey" not in listed[0]

    rotated = api.post(f"/api/v1/client/customers/cus_42/keys/{body['id']}/rotate").json()
    assert rotated["apiKey"] != body["apiKey"]
    revoked = api.delete(f"/api/v1/client/customers/cus_42/keys/{body['id']}")
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert tenant.api(body["apiKey"]).get("/api/sdk-keys/me").status_code == 401
    assert tenant.api(rotated["apiKey"]).get("/api/sdk-keys/me").status_code == 200


def test_default_scope_is_read_and_bad_scope_is_400(tenant):
    make_customer(tenant.test, "cus_1")
    api = tenant.api()
    assert api.post("/api/v1/client/customers/cus_1/keys", {}, format="json").json()["scopes"] == [
        "read"
    ]
    bad = api.post("/api/v1/client/customers/cus_1/keys", {"scopes": ["admin"]}, format="json")
    assert bad.status_code == 400


def test_a_key_of_one_customer_is_not_found_under_another(tenant):
    a, b = make_customer(tenant.test, "cus_a"), make_customer(tenant.test, "cus_b")
    key_a = make_key(tenant.test, "ck", customer=a)
    make_key(tenant.test, "ck", customer=b)
    api = tenant.api()
    assert api.delete(f"/api/v1/client/customers/cus_b/keys/{key_a.key.pk}").status_code == 404
    assert tenant.api(key_a.plaintext).get("/api/sdk-keys/me").status_code == 200


def test_customer_keys_cannot_issue_keys(tenant):
    customer = make_customer(tenant.test, "cus_a")
    ck = make_key(tenant.test, "ck", customer=customer)
    response = tenant.api(ck.plaintext).post(
        "/api/v1/client/customers/cus_a/keys", {}, format="json"
    )
    assert response.status_code == 403


def test_outsider_and_other_environment_get_404(tenant, outsider):
    customer = make_customer(tenant.test, "cus_a")
    issued = make_key(tenant.test, "ck", customer=customer)
    for api in (outsider.api(), tenant.api(tenant.sk_live)):
        assert api.get("/api/v1/client/customers/cus_a/keys").status_code == 404
        assert api.post("/api/v1/client/customers/cus_a/keys", {}, format="json").status_code == 404
        assert api.delete(f"/api/v1/client/customers/cus_a/keys/{issued.key.pk}").status_code == 404
