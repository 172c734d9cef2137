"""Stripe's invoices of Stripe-driven subscriptions, delivered by real signed webhooks from the
peer to our live endpoint, show in our invoices API with Stripe's status; a failed payment
makes the subscription past due (checks deny) until Stripe reports it paid."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import time
from typing import Any

import pytest
import requests
import stripe
from django.db import connection, transaction
from django.utils import timezone

from apps.billing.models import Invoice
from apps.billing.services import billing_update_statuses
from apps.stripe_meters.mirror import stripe_invoice_mirror, stripe_invoice_refresh
from apps.stripe_meters.models import StripeCustomer, StripeInvoice
from apps.stripe_sync.models import StripeConnection
from apps.subscriptions.models import Subscription
from tests.stripe_meters.conftest import Driven, batch_event, make_driven, rule
from tests.stripe_peer.fixtures import StripePeer

pytestmark = pytest.mark.django_db(transaction=True)

GRADUATED = rule("graduated", tiers=[("1000", "0.005", "1"), (None, "0.0025", "0")])


@pytest.fixture
def webhooked(
    tenant: Any, stripe_webhooks: StripePeer, django_capture_on_commit_callbacks: Any
) -> Driven:
    """Stripe-driven, connected after the peer's webhooks were pointed at the live server."""
    return make_driven(tenant, stripe_webhooks, django_capture_on_commit_callbacks)


def _invoices(driven: Driven, reference: str = "cus_1", api: Any = None) -> Any:
    response = (api or driven.api()).get(f"/api/v1/client/billing/invoices/{reference}")
    assert response.status_code == 200, response.content
    return response.json()["items"]


def _wait_mirrored(driven: Driven, stripe_invoice_id: str, status: str) -> Invoice:
    deadline = timezone.now() + dt.timedelta(seconds=15)
    while True:
        mirror = StripeInvoice.objects.filter(stripe_invoice_id=stripe_invoice_id).first()
        if mirror is not None:
            invoice = Invoice.objects.get(pk=mirror.invoice_id)
            if invoice.status == status:
                return invoice
        if timezone.now() > deadline:
            raise AssertionError(
                f"{stripe_invoice_id} not mirrored as {status}: {driven.peer.deliveries()!r}"
            )
        time.sleep(0.1)


def test_a_stripe_invoice_paid_shows_on_our_invoice_api(webhooked: Driven) -> None:
    subscription = webhooked.subscribe(webhooked.plan("pro", {"tokens": GRADUATED}, price="29"))
    link = webhooked.provision(subscription)
    # Stripe's first invoice: the base price, open (default_incomplete: Stripe collects it).
    first = webhooked.stripe.v1.invoices.list(
        params={"subscription": link.stripe_subscription_id}
    ).data[0]
    pending = _wait_mirrored(webhooked, first.id, Invoice.Status.PENDING)
    assert pending.total_minor == 2900

    webhooked.stripe.v1.invoices.pay(first.id, params={"payment_method": "pm_card_visa"})
    webhooked.peer.wait_delivered("invoice.paid")
    paid = _wait_mirrored(webhooked, first.id, Invoice.Status.PAID)

    (shown,) = _invoices(webhooked)
    assert shown["id"] == str(paid.pk)
    assert shown["status"] == "PAID"
    assert shown["type"] == "IN_ADVANCE_INITIAL"
    assert (shown["amountMinor"], shown["currency"]) == (2900, "USD")
    assert shown["metadata"]["source"] == "stripe"
    assert shown["metadata"]["stripeInvoiceId"] == first.id
    assert shown["metadata"]["stripeSubscriptionId"] == link.stripe_subscription_id
    assert shown["paidAt"] is not None
    assert [(i["kind"], i["amountMinor"]) for i in shown["items"]] == [("BASE", 2900)]
    assert shown["number"].startswith("INV-TEST-")
    # The same through the invoice list and the one-invoice route.
    listed = webhooked.api().get("/api/v1/client/billing/invoices").json()["items"]
    assert [i["id"] for i in listed] == [str(paid.pk)]
    one = webhooked.api().get(f"/api/v1/client/billing/invoices/cus_1/{paid.pk}")
    assert one.status_code == 200 and one.json()["status"] == "PAID"
    # A repeated delivery of the same event changes nothing.
    assert Invoice.objects.filter(subscription=subscription).count() == 1


def test_a_failed_payment_makes_the_customer_past_due_until_stripe_is_paid(
    webhooked: Driven,
) -> None:
    subscription = webhooked.subscribe(webhooked.plan("pro", {"tokens": GRADUATED}, price="0"))
    link = webhooked.provision(subscription)
    webhooked.batch([batch_event(units=u) for u in (400, 600, 500)])
    assert webhooked.send().sent == 3
    customer = StripeCustomer.objects.get(customer_id=subscription.customer_id).stripe_customer_id

    # Stripe closes the period: the usage on the graduated price, 725 cents.
    stripe_api = webhooked.stripe.v1.invoices
    draft = stripe_api.create(
        params={"customer": customer, "subscription": link.stripe_subscription_id}
    )
    stripe_api.finalize_invoice(draft.id)
    due = _wait_mirrored(webhooked, draft.id, Invoice.Status.DUE)
    assert due.total_minor == 725
    usage = [line for line in due.lines.all() if line.kind == "usage"]
    assert [(line.amount_minor, line.quantity, line.feature.key) for line in usage] == [
        (725, 1500, "tokens")
    ]

    with pytest.raises(stripe.CardError):
        stripe_api.pay(draft.id, params={"payment_method": "pm_card_chargeCustomerFail"})
    _wait_mirrored(webhooked, draft.id, Invoice.Status.PAST_DUE)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.PAST_DUE
    check = webhooked.api().post(
        "/api/v1/client/entitlements/check",
        {"customerReferenceId": "cus_1", "featureKey": "tokens"},
        format="json",
    )
    assert check.json()["allowed"] is False
    assert check.json()["reason"]["code"] == "past_due"

    stripe_api.pay(draft.id, params={"payment_method": "pm_card_visa"})
    _wait_mirrored(webhooked, draft.id, Invoice.Status.PAID)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ACTIVE
    assert [
        i["status"] for i in _invoices(webhooked) if i["metadata"]["stripeInvoiceId"] == draft.id
    ] == ["PAID"]


def test_our_status_job_leaves_stripe_invoices_to_stripe(webhooked: Driven) -> None:
    subscription = webhooked.subscribe(webhooked.plan("pro", price="29"))
    link = webhooked.provision(subscription)
    first = webhooked.stripe.v1.invoices.list(
        params={"subscription": link.stripe_subscription_id}
    ).data[0]
    invoice = _wait_mirrored(webhooked, first.id, Invoice.Status.PENDING)
    billing_update_statuses(now=timezone.now() + dt.timedelta(days=30))
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PENDING
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ACTIVE


def test_a_voided_stripe_invoice_is_void_here(webhooked: Driven) -> None:
    subscription = webhooked.subscribe(webhooked.plan("pro", price="29"))
    link = webhooked.provision(subscription)
    first = webhooked.stripe.v1.invoices.list(
        params={"subscription": link.stripe_subscription_id}
    ).data[0]
    _wait_mirrored(webhooked, first.id, Invoice.Status.PENDING)
    # localstripe cannot void an invoice no payment was tried on: deliver Stripe's
    # invoice.voided by hand, signed as Stripe signs, through the real endpoint.
    voided = {**webhooked.stripe.v1.invoices.retrieve(first.id).to_dict(), "status": "void"}
    _deliver(webhooked, "invoice.voided", voided)
    _wait_mirrored(webhooked, first.id, Invoice.Status.VOID)
    (shown,) = _invoices(webhooked)
    assert (shown["status"], shown["voidedAt"] is not None) == ("VOID", True)
    # A late invoice.created (status draft) does not bring it back.
    _deliver(webhooked, "invoice.created", {**voided, "status": "draft"})
    assert _invoices(webhooked)[0]["status"] == "VOID"


def _deliver(driven: Driven, event_type: str, obj: dict[str, Any]) -> None:
    """Send one Stripe event to our webhook endpoint as Stripe would (signed)."""
    endpoint = StripeConnection.objects.get(environment=driven.env).webhook_endpoint
    assert endpoint is not None
    payload = json.dumps(
        {
            "id": f"evt_{secrets.token_hex(8)}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": obj},
        },
        default=str,
    ).encode()
    timestamp = int(time.time())
    signature = hmac.new(
        endpoint.secret.encode(), b"%d.%s" % (timestamp, payload), hashlib.sha256
    ).hexdigest()
    response = requests.post(
        endpoint.url,
        data=payload,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": f"t={timestamp},v1={signature}",
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_other_tenants_and_environments_see_none_of_it(webhooked: Driven, outsider: Any) -> None:
    subscription = webhooked.subscribe(webhooked.plan("pro", price="29"))
    link = webhooked.provision(subscription)
    first = webhooked.stripe.v1.invoices.list(
        params={"subscription": link.stripe_subscription_id}
    ).data[0]
    invoice = _wait_mirrored(webhooked, first.id, Invoice.Status.PENDING)

    for api in (outsider.api(), webhooked.tenant.api(webhooked.tenant.sk_live)):
        assert api.get("/api/v1/client/billing/invoices").json()["items"] == []
        assert api.get("/api/v1/client/billing/invoices/cus_1").status_code == 404
        assert api.get(f"/api/v1/client/billing/invoices/cus_1/{invoice.pk}").status_code == 404


def test_environments_in_other_modes_ignore_invoice_events(webhooked: Driven) -> None:
    from apps.billing.services import billing_settings_update

    subscription = webhooked.subscribe(webhooked.plan("pro", price="29"))
    link = webhooked.provision(subscription)
    billing_settings_update(environment=webhooked.env, stripe_mode="none")
    created = webhooked.stripe.v1.invoices.create(
        params={
            "customer": StripeCustomer.objects.get().stripe_customer_id,
            "subscription": link.stripe_subscription_id,
        }
    )
    webhooked.peer.wait_for(
        lambda rows: [
            r
            for r in rows
            if r["type"] == "invoice.created"
            and created.id in r["payload"]
            and r["status"] is not None
        ],
        what="the invoice.created delivery",
    )
    assert not StripeInvoice.objects.filter(stripe_invoice_id=created.id).exists()


def test_an_invoice_with_more_lines_than_its_event_carries_is_read_whole(
    webhooked: Driven,
) -> None:
    subscription = webhooked.subscribe(webhooked.plan("pro", price="0"))
    link = webhooked.provision(subscription)
    customer = StripeCustomer.objects.get().stripe_customer_id
    for n in range(12):
        webhooked.stripe.v1.invoice_items.create(
            params={"customer": customer, "amount": 100 + n, "currency": "usd"}
        )
    made = webhooked.stripe.v1.invoices.create(
        params={"customer": customer, "subscription": link.stripe_subscription_id}
    )
    first = _wait_mirrored(webhooked, made.id, Invoice.Status.PENDING)
    # The event listed 10 of the 14 lines (has_more): the rest is one line until read.
    assert first.lines.count() == 11
    assert first.total_minor == sum(100 + n for n in range(12))
    stripe_invoice_refresh(environment=webhooked.env, stripe_invoice_id=made.id)
    whole = Invoice.objects.get(pk=first.pk)
    # Two subscription lines (base price, tokens) and the twelve items, no balancing line,
    # in Stripe's order (the peer lists items newest second first: on a busy machine the
    # twelve span more than one second).
    in_stripe = [
        line.amount
        for line in webhooked.stripe.v1.invoices.line_items.list(
            made.id, params={"limit": 100}
        ).auto_paging_iter()
    ]
    assert sorted(in_stripe) == [0, 0] + [100 + n for n in range(12)]
    assert [line.amount_minor for line in whole.lines.order_by("position")] == in_stripe
    assert whole.total_minor == sum(100 + n for n in range(12))


def test_two_invoices_of_one_period_delivered_at_once_are_both_mirrored(
    tenant: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Stripe's first invoice of a subscription and one made by hand for the same period,
    their webhooks handled at the same time: the second waits for the first and becomes
    an adjustment (it used to fail the one-invoice-per-period constraint: a 500)."""
    driven = Driven(tenant, None, "", django_capture_on_commit_callbacks, tenant.test)  # type: ignore[arg-type]
    subscription = driven.subscribe(driven.plan("pro", price="29"))
    start = int(subscription.current_period_start.timestamp())

    def stripe_invoice(stripe_id: str) -> dict[str, Any]:
        return {
            "id": stripe_id,
            "status": "draft",
            "currency": "usd",
            "created": start,
            "period_start": start,
            "period_end": start,
            "total": 0,
            "lines": {"data": [], "has_more": False},
            "parent": {
                "subscription_details": {
                    "subscription": "sub_1",
                    "metadata": {"tanso_subscription_id": str(subscription.pk)},
                }
            },
        }

    def mirror(stripe_id: str) -> None:
        with transaction.atomic():
            stripe_invoice_mirror(
                environment=tenant.test,
                event_type="invoice.created",
                invoice=stripe_invoice(stripe_id),
                event_created=start,
            )

    failures: list[BaseException] = []

    def second() -> None:
        try:
            mirror("in_second")
        except BaseException as exc:  # re-raised below, in the test's thread
            failures.append(exc)
        finally:
            connection.close()

    with transaction.atomic():
        mirror("in_first")
        thread = threading.Thread(target=second)
        thread.start()
        # Commit only once the second delivery waits on a lock this transaction holds
        # (pg_locks is read live; pg_stat_activity would be a snapshot of this transaction).
        deadline = time.monotonic() + 10
        with connection.cursor() as cur:
            while True:
                cur.execute(
                    "SELECT count(*) FROM pg_locks"
                    " WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid))"
                )
                if cur.fetchone()[0] or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
    thread.join(10)
    assert not failures, failures
    types = {
        mirror.stripe_invoice_id: mirror.invoice.type
        for mirror in StripeInvoice.objects.select_related("invoice")
    }
    assert types == {
        "in_first": Invoice.Type.IN_ADVANCE_INITIAL,
        "in_second": Invoice.Type.ADJUSTMENT,
    }
