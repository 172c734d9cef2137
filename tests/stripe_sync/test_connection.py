"""Connecting Stripe: the key is checked with Stripe (the localstripe peer), stored
encrypted, never shown again; the webhook endpoint is created in Stripe; disconnect
forgets it and resets the mode; other tenants see nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from djstripe.models import WebhookEndpoint

from apps.accounts.models import AuditEntry
from apps.billing.models import BillingSettings
from apps.core import crypto
from apps.stripe_sync.models import StripeConnection
from tests.conftest import Tenant
from tests.stripe_peer.fixtures import StripePeer

URL = "/api/v1/client/stripe"
pytestmark = pytest.mark.django_db


def connect(tenant: Tenant, key: str, api_key: str | None = None) -> Any:
    return tenant.api(api_key).post(f"{URL}/connect", {"stripeSecretKey": key}, format="json")


def test_connect_stores_the_key_encrypted_and_never_returns_it(
    tenant: Tenant, stripe_peer: StripePeer, settings: Any
) -> None:
    settings.STRIPE_WEBHOOK_BASE_URL = "https://tanso.example"
    key = stripe_peer.new_key()
    response = connect(tenant, key)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["connected"] is True
    assert body["keyLast4"] == key[-4:]
    assert body["accountId"].startswith("acct_")
    assert body["webhook"]["source"] == "STRIPE"
    assert body["webhook"]["url"].startswith("https://tanso.example/stripe/webhook/")
    assert "webhookSecret" not in body  # Stripe made the endpoint and holds its secret
    assert key not in response.content.decode()

    # In the database: only ciphertext.
    with connection.cursor() as cur:
        cur.execute("SELECT key_encrypted, key_hint FROM stripe_sync_stripeconnection")
        ((raw, hint),) = cur.fetchall()
    assert key not in raw and key[8:] not in raw
    assert hint == key[-4:]
    assert crypto.decrypt(raw) == key

    # The endpoint exists in Stripe, and dj-stripe holds its signing secret.
    row = StripeConnection.objects.get(environment=tenant.test)
    endpoint = row.webhook_endpoint
    assert endpoint is not None and endpoint.secret.startswith("whsec_")
    listed = stripe_peer.client(key).v1.webhook_endpoints.list()
    assert [e.id for e in listed.data] == [endpoint.id]

    shown = tenant.api().get(URL)
    assert shown.status_code == 200
    assert shown.json()["keyLast4"] == key[-4:]
    assert key not in shown.content.decode()
    assert endpoint.secret not in shown.content.decode()
    assert AuditEntry.objects.filter(action="stripe.connected").count() == 1


def test_a_key_stripe_refuses_is_a_4xx_and_nothing_is_stored(
    tenant: Tenant, stripe_peer: StripePeer
) -> None:
    # localstripe refuses keys that are not sk_ (as Stripe refuses unknown keys).
    response = connect(tenant, "rk_test_" + "a" * 24)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "stripe_key_invalid"
    assert not StripeConnection.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "stripeSecretKey"),
        ({"stripeSecretKey": "pk_test_abcdefgh1234"}, "stripeSecretKey"),
        ({"stripeSecretKey": "sk_live_abcdefgh1234"}, "stripeSecretKey"),  # test environment
        ({"stripeSecretKey": 42}, "stripeSecretKey"),
        ({"stripeSecretKey": "sk_test_" + "x" * 300}, "stripeSecretKey"),
    ],
)
def test_bad_input_is_a_validation_envelope(
    tenant: Tenant, stripe_peer: StripePeer, body: dict, field: str
) -> None:
    response = tenant.api().post(f"{URL}/connect", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert field in error["fields"]
    assert not StripeConnection.objects.exists()


def test_not_json_object_is_400(tenant: Tenant) -> None:
    response = tenant.api().post(f"{URL}/connect", [1, 2], format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_failed"


def test_disconnect_forgets_the_key_and_resets_the_mode(
    tenant: Tenant, stripe_peer: StripePeer
) -> None:
    key = stripe_peer.new_key()
    assert connect(tenant, key).status_code == 201
    tenant.api().patch(
        "/api/v1/client/billing/settings", {"stripeMode": "PASS_THROUGH"}, format="json"
    )
    endpoint = StripeConnection.objects.get().webhook_endpoint
    assert endpoint is not None

    response = tenant.api().delete(URL)
    assert response.status_code == 200
    assert response.json() == {"connected": False, "stripeMode": "NONE"}
    assert not StripeConnection.objects.exists()
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert BillingSettings.objects.get(environment=tenant.test).stripe_mode == "none"
    assert stripe_peer.client(key).v1.webhook_endpoints.list().data == []
    # Idempotent.
    assert tenant.api().delete(URL).status_code == 200


def test_scopes(tenant: Tenant, stripe_peer: StripePeer) -> None:
    from tests.factories import make_key

    reader = make_key(tenant.test, "obs", scopes=["billing.read"]).plaintext
    assert tenant.api(reader).get(URL).status_code == 200
    denied = connect(tenant, stripe_peer.new_key(), api_key=reader)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "scope_denied"
    assert tenant.api(reader).delete(URL).status_code == 403


def test_other_tenants_and_the_other_environment_see_nothing(
    tenant: Tenant, outsider: Tenant, stripe_peer: StripePeer
) -> None:
    key = stripe_peer.new_key()
    assert connect(tenant, key).status_code == 201
    for api in (outsider.api(), tenant.api(tenant.sk_live)):
        assert api.get(URL).json() == {"connected": False, "stripeMode": "NONE"}
        # Disconnecting there leaves the tenant's test connection alone.
        assert api.delete(URL).status_code == 200
    assert StripeConnection.objects.filter(environment=tenant.test).exists()
    assert tenant.api().get(URL).json()["connected"] is True


def test_the_schema_describes_the_stripe_endpoints(client: Any) -> None:
    import yaml

    response = client.get("/api/schema")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    paths = schema["paths"]
    assert {"get", "delete"} <= set(paths["/api/v1/client/stripe"])
    assert "post" in paths["/api/v1/client/stripe/connect"]
    assert "get" in paths["/api/v1/client/stripe/invoices/{invoice_id}"]
    assert "post" in paths["/api/v1/client/stripe/invoices/{invoice_id}/push"]
    assert "200" in paths["/api/v1/client/stripe"]["delete"]["responses"]
    assert "StripeConnectionStatus" in schema["components"]["schemas"]
