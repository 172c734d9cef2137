"""Pass-through mode against the Stripe peer: our invoice is pushed to Stripe by a real
Celery worker, paid there, and Stripe's webhooks (signed, delivered to a live server)
mark ours paid once — however often, or concurrently, they arrive."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
import requests
import stripe
from django.utils import timezone

from apps.accounts.audit import Actor
from apps.billing.models import Invoice
from apps.billing.services import (
    billing_update_statuses,
    invoice_mark_paid,
    invoice_void,
)
from apps.customers.models import Customer
from apps.stripe_sync.models import StripeInvoiceSync, StripeWebhookEvent
from apps.stripe_sync.passthrough import stripe_invoice_push
from apps.subscriptions.models import Subscription
from tests.conftest import Tenant
from tests.stripe_peer.fixtures import StripePeer, connect_environment
from tests.stripe_sync.conftest import issue_invoice, pass_through, pushed, replay, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.celery]
SYSTEM = Actor.system()


def test_an_invoice_is_pushed_paid_in_stripe_and_paid_here_once(
    tenant: Tenant, stripe_webhooks: StripePeer, celery_worker: Any
) -> None:
    connection = pass_through(tenant.test, stripe_webhooks)
    Customer.objects.create(
        environment=tenant.test, reference_id="cus_1", email="ada@example.com", first_name="Ada"
    )
    invoice = issue_invoice(tenant.test)
    assert invoice.status == Invoice.Status.DUE and invoice.total_minor == 4900

    sync = pushed(invoice)
    client = stripe_webhooks.client(connection.api_key_for_tests)
    remote = client.v1.invoices.retrieve(sync.stripe_invoice_id)
    assert remote.status == "open"
    assert remote.total == 4900 and remote.currency == "usd"
    assert remote.collection_method == "send_invoice"
    assert remote.metadata["tanso_invoice_id"] == str(invoice.pk)
    assert [(line.amount, line.description) for line in remote.lines.data] == [
        (line.amount_minor, line.description) for line in invoice.lines.order_by("position")
    ]
    assert sync.hosted_invoice_url == remote.hosted_invoice_url and sync.hosted_invoice_url
    customer = Customer.objects.get(environment=tenant.test, reference_id="cus_1")
    assert customer.stripe_customer_id == remote.customer
    assert client.v1.customers.retrieve(remote.customer).email == "ada@example.com"

    # The customer pays in Stripe: invoice.payment_succeeded and invoice.paid arrive.
    client.v1.invoices.pay(sync.stripe_invoice_id, params={"payment_method": "pm_card_visa"})
    paid_event = stripe_webhooks.wait_delivered("invoice.paid")[0]
    stripe_webhooks.wait_delivered("invoice.payment_succeeded")
    assert paid_event["status"] == 200
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert invoice.payment_reference == f"stripe:{sync.stripe_invoice_id}"
    first_paid_at = invoice.paid_at
    sync.refresh_from_db()
    assert sync.state == "paid" and sync.stripe_status == "paid"
    connection.refresh_from_db()
    assert connection.sync_counts == {"invoicesPushed": 1, "invoicesPaid": 1}

    # The same signed event again, then six times at once: state changes once.
    assert replay(paid_event).status_code == 200
    barrier = threading.Barrier(6)
    codes: list[int] = []

    def deliver() -> None:
        barrier.wait()
        codes.append(replay(paid_event).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 6
    assert StripeWebhookEvent.objects.filter(stripe_event_id=paid_event["event"]).count() == 1
    invoice.refresh_from_db()
    assert invoice.paid_at == first_paid_at
    connection.refresh_from_db()
    assert connection.sync_counts["invoicesPaid"] == 1
    # Stripe still has one invoice for the customer.
    assert len(client.v1.invoices.list(params={"customer": remote.customer}).data) == 1


def test_the_same_event_delivered_concurrently_first_time_pays_once(
    tenant: Tenant, stripe_webhooks: StripePeer, celery_worker: Any
) -> None:
    """Concurrent first deliveries (no earlier row): exactly one handles the payment."""
    connection = pass_through(tenant.test, stripe_webhooks)
    invoice = issue_invoice(tenant.test)
    sync = pushed(invoice)
    client = stripe_webhooks.client(connection.api_key_for_tests)
    # Capture the signed event without letting it reach us: point the endpoint elsewhere.
    stripe_webhooks.point_webhooks_at("http://127.0.0.1:9/nowhere")
    client.v1.invoices.pay(sync.stripe_invoice_id, params={"payment_method": "pm_card_visa"})
    delivery = stripe_webhooks.wait_delivered("invoice.paid")[0]
    delivery = {**delivery, "url": connection.webhook_endpoint.url}
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.DUE

    barrier = threading.Barrier(8)
    codes: list[int] = []

    def deliver() -> None:
        barrier.wait()
        codes.append(replay(delivery).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 8
    assert StripeWebhookEvent.objects.filter(stripe_event_id=delivery["event"]).count() == 1
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    connection.refresh_from_db()
    assert connection.sync_counts.get("invoicesPaid") == 1


def test_a_forged_payment_event_is_rejected_and_changes_nothing(
    tenant: Tenant, stripe_webhooks: StripePeer, celery_worker: Any
) -> None:
    connection = pass_through(tenant.test, stripe_webhooks)
    invoice = issue_invoice(tenant.test)
    sync = pushed(invoice)
    # A genuine event's envelope, re-pointed at our invoice and re-signed with a wrong secret.
    stripe_webhooks.client(connection.api_key_for_tests).v1.customers.update(
        invoice.customer.stripe_customer_id, params={"description": "x"}
    )
    import json

    forged = {
        "id": "evt_forged",
        "object": "event",
        "type": "invoice.paid",
        "livemode": False,
        "created": int(time.time()),
        "data": {"object": {"id": sync.stripe_invoice_id, "object": "invoice", "status": "paid"}},
    }
    body = json.dumps(forged)
    timestamp = int(time.time())
    signature = stripe.WebhookSignature._compute_signature(
        f"{timestamp}.{body}", "whsec_not_the_secret"
    )
    response = requests.post(
        connection.webhook_endpoint.url,
        data=body.encode(),
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": f"t={timestamp},v1={signature}",
        },
        timeout=30,
    )
    assert response.status_code == 400
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.DUE
    assert not StripeWebhookEvent.objects.filter(stripe_event_id="evt_forged").exists()


def test_payment_failure_is_recorded_and_the_invoice_stays_due(
    tenant: Tenant, stripe_webhooks: StripePeer, celery_worker: Any
) -> None:
    connection = pass_through(tenant.test, stripe_webhooks)
    invoice = issue_invoice(tenant.test)
    sync = pushed(invoice)
    client = stripe_webhooks.client(connection.api_key_for_tests)
    with pytest.raises(stripe.CardError):
        client.v1.invoices.pay(
            sync.stripe_invoice_id, params={"payment_method": "pm_card_chargeCustomerFail"}
        )
    stripe_webhooks.wait_delivered("invoice.payment_failed")
    sync.refresh_from_db()
    assert sync.payment_failures == 1
    assert "failed" in sync.last_payment_error
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.DUE


def test_paying_in_stripe_lifts_past_due(
    tenant: Tenant, stripe_webhooks: StripePeer, celery_worker: Any
) -> None:
    connection = pass_through(tenant.test, stripe_webhooks)
    invoice = issue_invoice(tenant.test)
    sync = pushed(invoice)
    billing_update_statuses(now=timezone.now() + dt.timedelta(days=10))
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAST_DUE
    subscription = Subscription.objects.get(pk=invoice.subscription_id)
    assert subscription.status == Subscription.Status.PAST_DUE

    stripe_webhooks.client(connection.api_key_for_tests).v1.invoices.pay(
        sync.stripe_invoice_id, params={"payment_method": "pm_card_visa"}
    )
    stripe_webhooks.wait_delivered("invoice.paid")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ACTIVE


def test_a_retried_or_concurrent_push_creates_one_stripe_invoice(
    tenant: Tenant, peer: StripePeer, settings: Any
) -> None:
    """No worker: the task body runs here, twice in a row, with its bookkeeping lost, and
    from two threads at once."""
    connection = pass_through(tenant.test, peer)
    invoice = issue_invoice(tenant.test)
    first = stripe_invoice_push(invoice_id=invoice.pk)
    assert first.outcome == "pushed"
    assert stripe_invoice_push(invoice_id=invoice.pk).outcome == "already"

    # A retry that lost our bookkeeping (a crash after Stripe answered): the idempotency
    # keys give back the same Stripe objects.
    StripeInvoiceSync.objects.filter(invoice=invoice).update(
        stripe_invoice_id="", state="pending", stripe_status=""
    )
    Customer.objects.filter(pk=invoice.customer_id).update(stripe_customer_id="")
    again = stripe_invoice_push(invoice_id=invoice.pk)
    assert again.outcome == "pushed"
    assert again.stripe_invoice_id == first.stripe_invoice_id

    client = peer.client(connection.api_key_for_tests)
    customers = client.v1.customers.list().data
    assert len(customers) == 1
    stripe_invoices = client.v1.invoices.list(params={"customer": customers[0].id}).data
    assert [i.id for i in stripe_invoices] == [first.stripe_invoice_id]
    assert len(stripe_invoices[0].lines.data) == invoice.lines.count()

    # Two workers at once on a new invoice: one pushes, the other stands back.
    second = issue_invoice(tenant.test, reference="cus_2")
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def push() -> None:
        from django.db import connection as db

        barrier.wait()
        try:
            outcomes.append(stripe_invoice_push(invoice_id=second.pk).outcome)
        finally:
            db.close()

    threads = [threading.Thread(target=push) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) in (["busy", "pushed"], ["already", "pushed"])
    cus_2 = Customer.objects.get(environment=tenant.test, reference_id="cus_2")
    assert len(client.v1.invoices.list(params={"customer": cus_2.stripe_customer_id}).data) == 1


def test_mark_paid_here_closes_the_stripe_invoice(
    tenant: Tenant, stripe_webhooks: StripePeer, celery_worker: Any
) -> None:
    connection = pass_through(tenant.test, stripe_webhooks)
    client = stripe_webhooks.client(connection.api_key_for_tests)
    paid_here = issue_invoice(tenant.test)
    voided_here = issue_invoice(tenant.test, reference="cus_2")
    sync_paid, sync_void = pushed(paid_here), pushed(voided_here)

    response = tenant.api().post(
        f"/api/v1/client/billing/invoices/{paid_here.pk}/mark-paid",
        {"paymentReference": "wire 7"},
        format="json",
    )
    assert response.status_code == 200, response.content
    invoice_void(invoice=voided_here, actor=SYSTEM)

    wait_until(
        lambda: client.v1.invoices.retrieve(sync_paid.stripe_invoice_id).status == "paid",
        what="the Stripe invoice paid out of band",
    )
    wait_until(
        lambda: client.v1.invoices.retrieve(sync_void.stripe_invoice_id).status == "void",
        what="the Stripe invoice voided",
    )
    paid_here.refresh_from_db()
    assert paid_here.payment_reference == "wire 7"  # the out-of-band event changed nothing
    stripe_webhooks.wait_delivered("invoice.paid")
    paid_here.refresh_from_db()
    assert paid_here.payment_reference == "wire 7"


def test_other_modes_push_nothing(tenant: Tenant, peer: StripePeer, celery_worker: Any) -> None:
    connection = connect_environment(tenant.test, peer)  # mode stays none
    invoice = issue_invoice(tenant.test)
    time.sleep(1)
    assert not StripeInvoiceSync.objects.exists()
    assert stripe_invoice_push(invoice_id=invoice.pk).outcome == "not_pass_through"
    assert peer.client(connection.api_key_for_tests).v1.customers.list().data == []
    # Mark-paid by API still works (none and pass-through; refused only when Stripe drives).
    invoice_mark_paid(invoice=invoice, actor=SYSTEM)


def test_webhooks_reach_only_their_own_environment(
    tenant: Tenant, outsider: Tenant, stripe_webhooks: StripePeer, celery_worker: Any
) -> None:
    """The peer sends every event to every endpoint (one Stripe for everyone): the
    outsider's endpoint gets the tenant's invoice.paid, correctly signed for it, and its
    environment maps no such invoice."""
    connection = pass_through(tenant.test, stripe_webhooks)
    outsider_connection = pass_through(outsider.test, stripe_webhooks)
    invoice = issue_invoice(tenant.test)
    sync = pushed(invoice)
    stripe_webhooks.client(connection.api_key_for_tests).v1.invoices.pay(
        sync.stripe_invoice_id, params={"payment_method": "pm_card_visa"}
    )
    deliveries = stripe_webhooks.wait_delivered("invoice.paid", count=2)
    assert {d["url"] for d in deliveries} == {
        connection.webhook_endpoint.url,
        outsider_connection.webhook_endpoint.url,
    }
    assert all(d["status"] == 200 for d in deliveries)
    assert (
        StripeWebhookEvent.objects.filter(environment=outsider.test, type="invoice.paid").count()
        == 1
    )
    assert not StripeInvoiceSync.objects.filter(environment=outsider.test).exists()
    outsider_connection.refresh_from_db()
    assert "invoicesPaid" not in outsider_connection.sync_counts
    # The API of another organization or environment does not show the tenant's connection.
    assert outsider.api().get("/api/v1/client/stripe").json()["keyLast4"] == (
        outsider_connection.key_hint
    )
    assert tenant.api(tenant.sk_live).get("/api/v1/client/stripe").json()["connected"] is False
