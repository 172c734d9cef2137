"""Pass-through status and "push again" API, the beat's safety net and transient
failures (Stripe unreachable: retried, then exactly one Stripe invoice)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from apps.billing.models import Invoice
from apps.billing.services import billing_settings_update
from apps.stripe_sync.models import StripeConnection, StripeInvoiceSync
from apps.stripe_sync.passthrough import PushRetry, stripe_invoice_push
from apps.stripe_sync.tasks import push_invoice, push_pending_invoices
from tests.conftest import Tenant
from tests.factories import make_key
from tests.stripe_peer.fixtures import StripePeer, connect_environment
from tests.stripe_sync.conftest import issue_invoice, pass_through, wait_until

URL = "/api/v1/client/stripe/invoices"


def stripe_invoices(peer: StripePeer, connection: StripeConnection) -> list[Any]:
    client = peer.client(connection.api_key_for_tests)
    return [
        invoice
        for customer in client.v1.customers.list().data
        for invoice in client.v1.invoices.list(params={"customer": customer.id}).data
    ]


@pytest.mark.django_db
def test_status_of_a_pushed_invoice_and_who_may_see_it(
    tenant: Tenant, outsider: Tenant, peer: StripePeer
) -> None:
    connect_environment(tenant.test, peer)
    invoice = issue_invoice(tenant.test)  # mode none: not pushed
    assert tenant.api().get(f"{URL}/{invoice.pk}").json() == {
        "invoiceId": str(invoice.pk),
        "state": "NOT_PUSHED",
    }
    billing_settings_update(environment=tenant.test, stripe_mode="pass_through")
    stripe_invoice_push(invoice_id=invoice.pk)

    reader = make_key(tenant.test, "obs", scopes=["billing.read"]).plaintext
    response = tenant.api(reader).get(f"{URL}/{invoice.pk}")
    assert response.status_code == 200
    body = response.json()
    sync = StripeInvoiceSync.objects.get(invoice=invoice)
    assert body["state"] == "PUSHED"
    assert body["stripeInvoiceId"] == sync.stripe_invoice_id
    assert body["stripeStatus"] == "open"
    assert body["hostedInvoiceUrl"] == sync.hosted_invoice_url
    assert body["hostedInvoiceUrl"].startswith(peer.url)

    for api in (outsider.api(), tenant.api(tenant.sk_live)):
        response = api.get(f"{URL}/{invoice.pk}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert api.post(f"{URL}/{invoice.pk}/push").status_code == 404
    assert tenant.api().get(f"{URL}/not-a-uuid").status_code == 404
    assert tenant.api(reader).post(f"{URL}/{invoice.pk}/push").status_code == 403


@pytest.mark.django_db
def test_push_again_refuses_what_cannot_be_collected(
    tenant: Tenant, stripe_peer: StripePeer
) -> None:
    invoice = issue_invoice(tenant.test)
    response = tenant.api().post(f"{URL}/{invoice.pk}/push")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_pass_through"

    billing_settings_update(environment=tenant.test, stripe_mode="pass_through")
    response = tenant.api().post(f"{URL}/{invoice.pk}/push")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "stripe_not_connected"

    connect_environment(tenant.test, stripe_peer)
    tenant.api().post(f"/api/v1/client/billing/invoices/{invoice.pk}/mark-paid", {}, format="json")
    response = tenant.api().post(f"{URL}/{invoice.pk}/push")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invoice_not_payable"


@pytest.mark.django_db
def test_stripe_unreachable_is_retried_then_pushes_once(
    tenant: Tenant, peer: StripePeer, settings: Any
) -> None:
    connection = pass_through(tenant.test, peer)
    invoice = issue_invoice(tenant.test)

    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there
    with pytest.raises(PushRetry):
        stripe_invoice_push(invoice_id=invoice.pk)
    sync = StripeInvoiceSync.objects.get(invoice=invoice)
    assert sync.state == "pending" and "APIConnectionError" in sync.last_error

    settings.STRIPE_API_BASE = peer.url
    assert stripe_invoice_push(invoice_id=invoice.pk).outcome == "pushed"
    sync.refresh_from_db()
    assert sync.state == "pushed" and sync.push_attempts == 2 and sync.last_error == ""
    assert len(stripe_invoices(peer, connection)) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.celery
def test_the_sweep_and_repeated_tasks_push_once(
    tenant: Tenant, peer: StripePeer, celery_worker: Any
) -> None:
    """Invoices issued before pass-through was switched on are picked up by the beat's
    sweep; the push task enqueued three times more makes no second Stripe invoice."""
    connection = connect_environment(tenant.test, peer)
    first = issue_invoice(tenant.test)
    second = issue_invoice(tenant.test, reference="cus_2")
    paid = issue_invoice(tenant.test, reference="cus_3")
    tenant.api().post(f"/api/v1/client/billing/invoices/{paid.pk}/mark-paid", {}, format="json")
    billing_settings_update(environment=tenant.test, stripe_mode="pass_through")

    assert push_pending_invoices() == 2
    for _ in range(3):
        push_invoice.delay(str(first.pk))
    wait_until(
        lambda: StripeInvoiceSync.objects.filter(state="pushed").count() == 2,
        what="both invoices pushed",
    )
    # The three extra tasks find it pushed ("already"); let them run before counting.
    time.sleep(2)
    assert push_pending_invoices() == 0
    synced = {s.invoice_id for s in StripeInvoiceSync.objects.filter(state="pushed")}
    assert synced == {first.pk, second.pk}
    assert Invoice.objects.get(pk=paid.pk).status == "paid"
    remote = stripe_invoices(peer, connection)
    assert sorted(i.metadata["tanso_invoice_id"] for i in remote) == sorted(
        [str(first.pk), str(second.pk)]
    )
