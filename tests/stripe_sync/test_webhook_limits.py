"""Limits on the Stripe webhook endpoint (apps/stripe_sync/views.py): anyone who knows
an endpoint's url can post to it, and dj-stripe stores each delivery. A forged body is
kept only in part, a body over 1 MiB is refused unread, an endpoint's deliveries are
rate-limited, and a client that keeps sending unverified deliveries is shut out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from djstripe.models import WebhookEventTrigger

from apps.stripe_sync import webhooks
from apps.stripe_sync.models import StripeWebhookEvent
from apps.stripe_sync.webhooks import UNVERIFIED_BODY_KEPT, WebhookContext, webhook_handler
from tests.conftest import Tenant
from tests.stripe_peer.fixtures import StripePeer
from tests.stripe_sync.conftest import customer_created, replay

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # An endpoint is subscribed to the types that have handlers: one for customer.created.
    pytest.mark.usefixtures("customer_handler"),
]


@pytest.fixture
def customer_handler() -> Iterator[None]:
    def on_customer(ctx: WebhookContext) -> None:
        pass

    webhook_handler("customer.created")(on_customer)
    yield
    webhooks._handlers["customer.created"].remove(on_customer)


def forged(delivery: dict[str, Any], payload: str) -> requests.Response:
    """``payload`` posted with the delivery's (now wrong) signature."""
    return replay(delivery, payload=payload)


def padded_event(delivery: dict[str, Any], size: int) -> str:
    event = json.loads(delivery["payload"])
    event["data"]["object"]["description"] = "x" * size
    return json.dumps(event)


def test_a_forged_delivery_keeps_only_the_start_of_its_body(
    tenant: Tenant, stripe_webhooks: StripePeer
) -> None:
    _, delivery = customer_created(tenant.test, stripe_webhooks)
    verified = WebhookEventTrigger.objects.get()
    assert verified.valid and verified.body == delivery["payload"]  # a real one stays whole

    payload = padded_event(delivery, 600_000)
    response = forged(delivery, payload)
    assert response.status_code == 400
    trigger = WebhookEventTrigger.objects.exclude(pk=verified.pk).get()
    assert not trigger.valid
    assert len(trigger.body) < UNVERIFIED_BODY_KEPT + 100
    assert trigger.body.startswith(payload[:UNVERIFIED_BODY_KEPT])
    assert "[unverified: " in trigger.body and " characters, cut]" in trigger.body
    assert StripeWebhookEvent.objects.count() == 1  # only the real one was handled


def test_a_body_over_one_mib_is_413_and_stored_nowhere(
    tenant: Tenant, stripe_webhooks: StripePeer
) -> None:
    _, delivery = customer_created(tenant.test, stripe_webhooks)
    before = WebhookEventTrigger.objects.count()
    response = forged(delivery, padded_event(delivery, 1024 * 1024))
    assert response.status_code == 413
    nul = forged(delivery, delivery["payload"].replace('"id"', '"\x00id"', 1))
    assert nul.status_code == 400
    assert WebhookEventTrigger.objects.count() == before


def test_a_client_sending_unverified_deliveries_is_shut_out(
    tenant: Tenant, stripe_webhooks: StripePeer, settings: Any
) -> None:
    settings.STRIPE_WEBHOOK_INVALID_LIMIT = 3
    _, delivery = customer_created(tenant.test, stripe_webhooks)
    before = WebhookEventTrigger.objects.count()
    statuses = [forged(delivery, delivery["payload"] + " ").status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 400]  # the 4th is over the limit: it blocks the IP
    blocked = replay(delivery)  # even a signed one, from that client, until the window ends
    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["Retry-After"]) <= 600
    assert WebhookEventTrigger.objects.count() == before + 4


def test_an_endpoint_takes_a_limited_number_of_deliveries_a_second(
    tenant: Tenant, stripe_webhooks: StripePeer, settings: Any
) -> None:
    settings.STRIPE_WEBHOOK_RATE_LIMIT_PER_SECOND = 2
    _, delivery = customer_created(tenant.test, stripe_webhooks)
    # Five in well under two seconds: at least three fall into one one-second window.
    statuses = [replay(delivery).status_code for _ in range(5)]
    assert 429 in statuses and 200 in statuses, statuses
    assert set(statuses) <= {200, 429}
    assert StripeWebhookEvent.objects.count() == 1
