"""Webhooks from the Stripe peer reach dj-stripe's endpoint on a live server with real
signatures; each event is recorded and handled once, however often or concurrently it
is delivered; a forged or missing signature is a 400 and changes nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.core.checks import run_checks
from djstripe.models import Customer as DjCustomer
from djstripe.models import Event as DjEvent
from djstripe.models import WebhookEventTrigger

from apps.stripe_sync import webhooks
from apps.stripe_sync.models import StripeWebhookEvent
from apps.stripe_sync.webhooks import WebhookContext, webhook_handler
from tests.conftest import Tenant
from tests.stripe_peer.fixtures import StripePeer, connect_environment
from tests.stripe_sync.conftest import customer_created, replay

pytestmark = pytest.mark.django_db(transaction=True)

calls: list[tuple[str, str]] = []


@pytest.fixture
def customer_handler() -> Iterator[list[tuple[str, str]]]:
    """A handler for customer.created, registered for the test only."""

    def on_customer(ctx: WebhookContext) -> None:
        calls.append((str(ctx.environment.pk), ctx.obj["id"]))

    calls.clear()
    webhook_handler("customer.created")(on_customer)
    yield calls
    webhooks._handlers["customer.created"].remove(on_customer)


def test_an_event_is_delivered_signed_and_handled_once(
    tenant: Tenant, stripe_webhooks: StripePeer, customer_handler: list
) -> None:
    connection = connect_environment(tenant.test, stripe_webhooks)
    client = stripe_webhooks.client(connection.api_key_for_tests)
    customer = client.v1.customers.create(params={"email": "ada@example.com"})

    (delivery,) = stripe_webhooks.wait_delivered("customer.created")
    assert delivery["status"] == 200, delivery
    assert "/stripe/webhook/" in delivery["url"]
    row = StripeWebhookEvent.objects.get()
    assert row.environment_id == tenant.test.pk
    assert row.type == "customer.created" and row.handled
    assert row.data_object["id"] == customer.id
    assert customer_handler == [(str(tenant.test.pk), customer.id)]
    # dj-stripe's mirror holds the customer too (best effort; see docs/stripe.md).
    mirrored = DjCustomer.objects.get(id=customer.id)
    assert mirrored.email == "ada@example.com"

    # The same signed delivery again: 200, nothing more happens.
    assert replay(delivery).status_code == 200
    assert StripeWebhookEvent.objects.count() == 1
    assert customer_handler == [(str(tenant.test.pk), customer.id)]


def test_concurrent_deliveries_of_one_event_are_handled_once(
    tenant: Tenant, stripe_webhooks: StripePeer, customer_handler: list
) -> None:
    _, delivery = customer_created(tenant.test, stripe_webhooks)
    StripeWebhookEvent.objects.all().delete()
    customer_handler.clear()

    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def deliver() -> None:
        barrier.wait()
        statuses.append(replay(delivery).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 6
    assert StripeWebhookEvent.objects.count() == 1
    assert len(customer_handler) == 1


def test_forged_or_missing_signatures_are_400_and_change_nothing(
    tenant: Tenant, stripe_webhooks: StripePeer, customer_handler: list
) -> None:
    _, delivery = customer_created(tenant.test, stripe_webhooks)
    StripeWebhookEvent.objects.all().delete()
    customer_handler.clear()

    tampered = delivery["payload"].replace("customer.created", "customer.created ")
    forged_sig = delivery["headers"]["Stripe-Signature"].rsplit("=", 1)[0] + "=" + "0" * 64
    cases = [
        replay(delivery, payload=tampered),  # body changed after signing
        replay(delivery, headers={"Stripe-Signature": forged_sig}),
        requests.post(
            delivery["url"],
            data=delivery["payload"].encode(),
            headers={"Content-Type": "application/json"},
            timeout=30,
        ),
    ]
    assert [r.status_code for r in cases] == [400, 400, 400]
    assert not StripeWebhookEvent.objects.exists()
    assert customer_handler == []


def test_unknown_types_are_recorded_and_ignored(
    tenant: Tenant, stripe_webhooks: StripePeer
) -> None:
    connection = connect_environment(tenant.test, stripe_webhooks)
    # Subscribe the endpoint to everything (as an operator might in the dashboard).
    stripe_webhooks.register_webhook(
        "all", connection.webhook_endpoint.url, connection.webhook_endpoint.secret
    )
    stripe_webhooks.client(connection.api_key_for_tests).v1.products.create(
        params={"name": "Widget"}
    )
    stripe_webhooks.wait_delivered("product.created")
    row = StripeWebhookEvent.objects.get(type="product.created")
    assert row.handled is False


def test_after_disconnect_the_endpoint_is_gone(tenant: Tenant, stripe_webhooks: StripePeer) -> None:
    from apps.accounts.audit import Actor
    from apps.stripe_sync.services import stripe_disconnect

    connection = connect_environment(tenant.test, stripe_webhooks)
    url, secret = connection.webhook_endpoint.url, connection.webhook_endpoint.secret
    stripe_disconnect(environment=tenant.test, actor=Actor.system())
    # Stripe no longer sends to it; a delivery that was under way is a 404.
    stripe_webhooks.register_webhook("stale", url, secret)
    stripe_webhooks.client(connection.api_key_for_tests).v1.customers.create(params={})
    (delivery,) = stripe_webhooks.wait_delivered("customer.created")
    assert delivery["status"] == 404
    assert not StripeWebhookEvent.objects.exists()


def test_dj_stripe_marks_the_trigger_processed_on_the_event_we_recorded(
    tenant: Tenant, stripe_webhooks: StripePeer, customer_handler: list
) -> None:
    """Our receiver of dj-stripe's webhook_pre_process records the bare dj-stripe Event;
    dj-stripe's own processing then finds it and only links it to the trigger (had it
    called Stripe, it would have failed: no global key, and the answer would be 500)."""
    connection, delivery = customer_created(tenant.test, stripe_webhooks)
    assert delivery["status"] == 200, delivery
    trigger = WebhookEventTrigger.objects.get()
    assert trigger.valid and trigger.processed and trigger.exception == ""
    assert trigger.webhook_endpoint == connection.webhook_endpoint
    event = DjEvent.objects.get(id=delivery["event"])
    assert trigger.event_id == event.id
    assert event.type == "customer.created" and event.livemode is False
    assert event.data["object"]["id"] == customer_handler[0][1]
    # A replay is a second trigger on the same Event; the event is handled once.
    assert replay(delivery).status_code == 200
    assert [t.event_id for t in WebhookEventTrigger.objects.order_by("id")] == [event.id] * 2
    assert DjEvent.objects.count() == 1 and len(customer_handler) == 1


def test_a_handler_that_raises_rolls_back_and_the_retry_handles_it(
    tenant: Tenant, stripe_webhooks: StripePeer
) -> None:
    failures = ["once"]
    seen: list[str] = []

    def flaky(ctx: WebhookContext) -> None:
        seen.append(ctx.obj["id"])
        if failures:
            raise RuntimeError(failures.pop())

    webhook_handler("customer.created")(flaky)
    try:
        _, delivery = customer_created(tenant.test, stripe_webhooks)
        assert delivery["status"] == 500
        # Nothing of ours and no dj-stripe Event was kept; the trigger keeps the error.
        assert not StripeWebhookEvent.objects.exists()
        assert not DjEvent.objects.exists()
        trigger = WebhookEventTrigger.objects.get()
        assert trigger.valid and not trigger.processed and trigger.exception == "once"

        assert replay(delivery).status_code == 200  # Stripe's retry
        row = StripeWebhookEvent.objects.get()
        assert row.handled and row.stripe_event_id == delivery["event"]
        assert len(seen) == 2
        assert WebhookEventTrigger.objects.filter(processed=True).count() == 1
    finally:
        webhooks._handlers["customer.created"].remove(flaky)


def test_no_deprecated_dj_stripe_callback_is_configured(settings: Any) -> None:
    assert not hasattr(settings, "DJSTRIPE_WEBHOOK_EVENT_CALLBACK")
    messages = [str(m) for m in run_checks(tags=["djstripe"])]
    assert not [m for m in messages if "DJSTRIPE" in m], messages
