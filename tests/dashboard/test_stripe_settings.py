"""Settings → Stripe: connect a key (checked by the Stripe peer, shown only as its last 4
characters), choose the mode, disconnect; the webhook endpoint URL and the sync status;
the import panel in import mode. Owners and admins change; everyone else in the
organization reads (403 on every change); another organization, and the other
environment, see nothing of it."""

from __future__ import annotations

from typing import Any

import pytest

from apps.accounts.models import AuditEntry, Role
from apps.billing.models import BillingSettings
from apps.billing.services import billing_settings_get
from apps.stripe_sync.models import StripeConnection
from apps.stripe_sync.services import stripe_sync_record
from tests.conftest import web_as
from tests.stripe_peer.fixtures import connect_environment

from .html import find_all

pytestmark = pytest.mark.django_db

PAGE = "/dashboard/settings/stripe/"
CONNECT = f"{PAGE}connect/"
DISCONNECT = f"{PAGE}disconnect/"
MODE = f"{PAGE}mode/"


@pytest.fixture
def peer(stripe_peer, settings: Any):
    settings.STRIPE_WEBHOOK_BASE_URL = "https://tanso.example"
    return stripe_peer


def section(client, testid: str, url: str = PAGE) -> dict:
    response = client.get(url)
    assert response.status_code == 200
    [found] = find_all(response.content, "section", data_testid=testid)
    return found


def test_owner_connects_and_sees_only_the_last_four(tenant, web, peer):
    assert section(web, "stripe-connection")["data-connected"] == "false"
    key = peer.new_key()
    response = web.post(CONNECT, {"api_key": key})
    assert response.status_code == 302, response.content.decode()[:2000]
    page = web.get(PAGE).content.decode()
    assert key not in page and key[8:-4] not in page
    shown = section(web, "stripe-connection")
    assert (shown["data-connected"], shown["data-key-last4"]) == ("true", key[-4:])
    assert shown["data-key-type"] == "secret" and shown["data-account"].startswith("acct_")
    assert f"sk_test_••••••••{key[-4:]}" in page
    # The webhook endpoint was made in Stripe (the peer) and points at us.
    webhook = section(web, "stripe-webhook")
    assert webhook["data-source"] == "stripe"
    row = StripeConnection.objects.get(environment=tenant.test)
    assert row.webhook_endpoint.url.startswith("https://tanso.example/stripe/webhook/")
    assert f'value="{row.webhook_endpoint.url}"' in page
    assert row.webhook_endpoint.secret not in page
    listed = peer.client(key).v1.webhook_endpoints.list()
    assert [e.url for e in listed.data] == [row.webhook_endpoint.url]
    # Audited, with the person.
    entry = AuditEntry.objects.get(action="stripe.connected")
    assert entry.actor_user_id == tenant.owner.pk and entry.detail["keyHint"] == key[-4:]


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("", "Paste a secret or restricted key."),
        ("pk_test_abcdefgh12345678", "A Stripe secret"),
        ("sk_live_abcdefgh12345678", "use a test key"),  # the test environment
        ("rk_test_" + "a" * 24, "Stripe refused this key."),  # the peer knows only sk_
    ],
)
def test_a_bad_key_is_said_next_to_the_field(tenant, web, peer, key, says):
    response = web.post(CONNECT, {"api_key": key})
    assert response.status_code == 400
    [error] = find_all(response.content, "small", data_testid="stripe-key-error")
    assert says in response.content.decode()
    assert error is not None
    assert not StripeConnection.objects.exists()
    assert not AuditEntry.objects.filter(action="stripe.connected").exists()


def test_mode_changes_and_is_audited(tenant, web, peer):
    # No mode but none without a connection.
    response = web.post(MODE, {"mode": "pass_through"})
    assert response.status_code == 409
    assert b"Connect a Stripe key first." in response.content
    assert web.post(MODE, {"mode": "nonsense"}).status_code == 400
    assert billing_settings_get(tenant.test).stripe_mode == "none"

    connect_environment(tenant.test, peer)
    assert web.post(MODE, {"mode": "pass_through"}).status_code == 302
    assert billing_settings_get(tenant.test).stripe_mode == "pass_through"
    page = web.get(PAGE).content
    assert section(web, "stripe-connection")["data-mode"] == "pass_through"
    assert find_all(page, "input", data_testid="stripe-mode-pass_through", checked=None)
    entry = AuditEntry.objects.get(action="billing.settings_changed")
    assert entry.detail["changes"] == {"stripeMode": ["none", "pass_through"]}
    assert entry.actor_user_id == tenant.owner.pk
    # The same setting the API reads.
    api = tenant.api().get("/api/v1/client/stripe").json()
    assert (api["connected"], api["stripeMode"]) == (True, "PASS_THROUGH")


def test_import_mode_shows_the_import_panel(tenant, web, peer):
    connect_environment(tenant.test, peer)
    assert b'data-testid="stripe-import"' not in web.get(PAGE).content
    assert web.post(MODE, {"mode": "import"}).status_code == 302
    panel = section(web, "stripe-import")
    assert panel["data-job-status"] == ""
    assert b'data-testid="stripe-import-start"' in web.get(PAGE).content


def test_disconnect_forgets_the_key(tenant, web, peer):
    connect_environment(tenant.test, peer)
    assert web.post(MODE, {"mode": "pass_through"}).status_code == 302
    assert web.post(DISCONNECT, {"confirm": "yes"}).status_code == 302
    assert section(web, "stripe-connection")["data-connected"] == "false"
    assert not StripeConnection.objects.exists()
    assert BillingSettings.objects.get(environment=tenant.test).stripe_mode == "none"
    assert AuditEntry.objects.filter(action="stripe.disconnected").count() == 1
    assert b'data-testid="stripe-webhook"' not in web.get(PAGE).content


def test_sync_status(tenant, web, peer):
    connection = connect_environment(tenant.test, peer)
    sync = section(web, "stripe-sync")
    assert (sync["data-last-sync"], sync["data-last-error"]) == ("", "")
    stripe_sync_record(environment_id=tenant.test.pk, counts={"invoicesPushed": 3})
    stripe_sync_record(
        environment_id=tenant.test.pk, counts={"invoicesPushed": 2}, error="card declined"
    )
    page = web.get(PAGE).content
    [count] = find_all(page, "tr", data_count="invoicesPushed")
    assert count["data-value"] == "5"
    sync = section(web, "stripe-sync")
    assert sync["data-last-sync"] and sync["data-last-error"] == "card declined"
    assert connection.key_hint.encode() in page


def test_roles(tenant, peer):
    connect_environment(tenant.test, peer)
    for role in (Role.VIEWER, Role.MEMBER):
        client = web_as(tenant.add_member(role))
        page = client.get(PAGE)
        assert page.status_code == 200
        assert not find_all(page.content, "form", data_testid="stripe-connect-form")
        assert client.post(CONNECT, {"api_key": peer.new_key()}).status_code == 403
        assert client.post(MODE, {"mode": "pass_through"}).status_code == 403
        assert client.post(DISCONNECT).status_code == 403
    assert StripeConnection.objects.filter(environment=tenant.test).exists()
    assert billing_settings_get(tenant.test).stripe_mode == "none"
    admin = web_as(tenant.add_member(Role.ADMIN))
    assert admin.post(MODE, {"mode": "stripe_driven"}).status_code == 302
    assert admin.get(PAGE).status_code == 200


def test_another_organization_and_the_other_environment_see_nothing(tenant, outsider, web, peer):
    connection = connect_environment(tenant.test, peer)
    assert web.post(MODE, {"mode": "pass_through"}).status_code == 302
    theirs = web_as(outsider.owner)
    shown = section(theirs, "stripe-connection")
    assert (shown["data-connected"], shown["data-mode"]) == ("false", "none")
    assert connection.key_hint.encode() not in theirs.get(PAGE).content
    # An outsider cannot change the tenant's connection: its posts act on its own.
    assert theirs.post(DISCONNECT, {"confirm": "yes"}).status_code == 302
    assert StripeConnection.objects.filter(environment=tenant.test).exists()

    # The live environment has its own (empty) connection; a test key is refused there.
    assert web.post("/dashboard/switch-environment/", {"env": "live"}).status_code == 302
    live = section(web, "stripe-connection")
    assert (live["data-connected"], live["data-mode"]) == ("false", "none")
    response = web.post(CONNECT, {"api_key": peer.new_key()})
    assert response.status_code == 400 and b"use a live key" in response.content
