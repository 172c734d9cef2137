"""The whole path with the real Celery worker: a subscription made through our API reaches
Stripe, events ingested through our API are sent once by the task the ingest wakes, the
task run again (or twice at once) sends nothing more, and an outage is retried."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from apps.stripe_meters.models import MeterEvent, StripeCustomer, StripeSubscription
from apps.stripe_meters.tasks import send_meter_events, sweep_meter_events, sweep_provisioning
from tests.stripe_meters.conftest import Driven, batch_event, received, rule
from tests.stripe_peer.fixtures import wait_until as poll

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.celery]


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    # A fresh snapshot of what the worker committed after each miss.
    return poll(predicate, what, timeout, between=connection.close)


@pytest.fixture
def worker_driven(celery_worker: Any, driven: Driven) -> Driven:
    """``driven`` with a real Celery worker running."""
    return driven


def test_api_subscription_and_events_reach_stripe_once(worker_driven: Driven) -> None:
    driven = worker_driven
    driven.plan("pro", {"tokens": rule(price="0.002")})
    made = driven.api().post(
        "/api/v1/client/customers",
        {"customerReferenceId": "cus_1", "email": "ada@example.com"},
        format="json",
    )
    assert made.status_code == 201, made.content
    customer = wait_until(
        lambda: StripeCustomer.objects.filter(environment=driven.env).first(),
        "the worker to make the Stripe customer of a new customer",
    )
    assert driven.stripe.v1.customers.retrieve(customer.stripe_customer_id).email == (
        "ada@example.com"
    )
    response = driven.api().post(
        "/api/v1/client/subscriptions",
        {"customerReferenceId": "cus_1", "planKey": "pro"},
        format="json",
    )
    assert response.status_code == 201, response.content
    link = wait_until(
        lambda: StripeSubscription.objects.filter(environment=driven.env).first(),
        "the worker to make the Stripe subscription",
    )
    assert driven.stripe.v1.subscriptions.retrieve(link.stripe_subscription_id).customer == (
        StripeCustomer.objects.get(environment=driven.env).stripe_customer_id
    )

    driven.event(units=3)
    driven.batch([batch_event(units=n) for n in (1, 2, 4)])
    wait_until(lambda: len(received(driven.peer)) >= 4, "the ingest-woken sender")
    wait_until(
        lambda: MeterEvent.objects.filter(status="sent").count() == 4, "the rows marked sent"
    )

    # Run again, twice at once, and through the sweeps: nothing is sent a second time. (No
    # result backend: the worker's log of tasks is the Redis queue; wait for it to drain.)
    send_meter_events.delay(str(driven.env.pk))
    send_meter_events.delay(str(driven.env.pk))
    sweep_meter_events.delay()
    sweep_provisioning.delay()
    driven.event(units=5)  # queued behind them: once it is sent, they have all run
    wait_until(lambda: len(received(driven.peer)) >= 5, "the fifth event")
    time.sleep(1)
    got = received(driven.peer)
    assert sorted(e["payload"]["value"] for e in got) == ["1", "2", "3", "4", "5"]
    assert len({e["identifier"] for e in got}) == 5
    assert len(driven.stripe.v1.subscriptions.list(params={"status": "all"}).data) == 1
    # The settings page's Stripe panel counts them.
    shown = driven.api().get("/api/v1/client/stripe").json()["sync"]
    assert shown["counts"]["meterEventsSent"] == 5
    assert shown["lastSyncAt"] is not None


def test_the_task_retries_with_backoff_while_stripe_is_down(
    worker_driven: Driven, settings: Any
) -> None:
    driven = worker_driven
    subscription = driven.subscribe(driven.plan("pro", {"tokens": rule(price="0.002")}))
    wait_until(
        lambda: StripeSubscription.objects.filter(subscription=subscription).exists(),
        "provisioning",
    )
    settings.STRIPE_API_BASE = "http://127.0.0.1:1"  # the worker's threads see it too
    driven.event(units=7)
    row = wait_until(
        lambda: MeterEvent.objects.filter(attempts__gte=1).first(), "a failed first attempt"
    )
    assert row.status == "pending" and "APIConnectionError" in row.last_error
    settings.STRIPE_API_BASE = driven.peer.url
    # The task's own retry (5 s backoff) sends it once Stripe answers again.
    wait_until(lambda: received(driven.peer), "the retried send", timeout=60)
    assert [e["payload"]["value"] for e in received(driven.peer)] == ["7"]
    wait_until(lambda: MeterEvent.objects.filter(status="sent").exists(), "the row marked sent")
