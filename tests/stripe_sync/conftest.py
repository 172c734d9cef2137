"""Stripe connection fixtures and helpers: a flushed Stripe peer, an environment connected
(and set to pass-through), an invoice issued by the billing cycle, and waiting for what a
worker or a webhook does."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import requests
from django.utils import timezone

from apps.billing.models import Invoice
from apps.billing.services import billing_close_periods, billing_settings_update
from apps.plans.models import Plan
from apps.stripe_sync.models import StripeConnection, StripeInvoiceSync
from tests.billing.helpers import plan, subscribe
from tests.stripe_peer.fixtures import StripePeer, connect_environment, wait_until


@pytest.fixture
def peer(stripe_peer: StripePeer) -> StripePeer:
    """The session's Stripe peer, emptied (no webhooks reach us: see ``stripe_webhooks``)."""
    stripe_peer.flush()
    return stripe_peer


def issue_invoice(environment: Any, reference: str = "cus_1", price: int = 49) -> Invoice:
    """An in-advance plan's first invoice (DUE at once), issued by the billing cycle."""
    now = timezone.now()
    the_plan = plan(
        environment, f"pro-{reference}", price=price, timing=Plan.BillingTiming.IN_ADVANCE
    )
    subscription = subscribe(
        environment, the_plan, at=now - dt.timedelta(minutes=1), reference=reference
    )
    billing_close_periods(now=now)
    return Invoice.objects.get(subscription=subscription)


def pass_through(environment: Any, peer: StripePeer) -> StripeConnection:
    """``environment`` connected to the peer and in pass-through mode."""
    connection = connect_environment(environment, peer)
    billing_settings_update(environment=environment, stripe_mode="pass_through")
    return connection


def pushed(invoice: Invoice) -> StripeInvoiceSync:
    return wait_until(
        lambda: StripeInvoiceSync.objects.filter(
            invoice=invoice, state__in=["pushed", "paid"]
        ).first(),
        what="the invoice pushed to Stripe",
    )


def replay(delivery: dict[str, Any], **overrides: Any) -> requests.Response:
    """Post a recorded webhook delivery again (``payload``/``headers`` overridable)."""
    headers = {**delivery["headers"], **overrides.pop("headers", {})}
    body = overrides.pop("payload", delivery["payload"])
    return requests.post(delivery["url"], data=body.encode(), headers=headers, timeout=30)


def customer_created(environment: Any, peer: StripePeer) -> tuple[StripeConnection, dict]:
    """Connect ``environment``, create a customer in its Stripe account and wait for the
    ``customer.created`` delivery to be answered; the connection and that delivery."""
    connection = connect_environment(environment, peer)
    peer.client(connection.api_key_for_tests).v1.customers.create(params={})
    (delivery,) = peer.wait_delivered("customer.created")
    return connection, delivery
