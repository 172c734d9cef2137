"""Usage sent to Stripe as Billing Meter events: once per event (whatever the retries, crashes
and concurrent senders), only the units credits did not cover, nothing for environments
in other modes, and never another tenant's events."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from apps.events.models import Event
from apps.events.pipeline import steps_for
from apps.stripe_meters import ingestion
from apps.stripe_meters.models import MeterEvent, StripeCustomer, meter_event_identifier
from apps.stripe_meters.services import meter_events_send, stripe_environment_provision
from tests.stripe_meters.conftest import (
    Driven,
    batch_event,
    duplicates,
    make_driven,
    received,
    rule,
)
from tests.stripe_peer.fixtures import StripePeer

D = Decimal
pytestmark = pytest.mark.django_db


def _subscribed(driven: Driven, reference: str = "cus_1", **features: Any) -> Any:
    plan = driven.plan(features=features or {"tokens": rule(price="0.002")})
    subscription = driven.subscribe(plan, reference)
    driven.provision(subscription)
    return StripeCustomer.objects.get(customer__reference_id=reference, environment=driven.env)


def test_each_event_is_sent_once_with_its_identifier_value_and_time(driven: Driven) -> None:
    link = _subscribed(driven)
    first = driven.event(units=5, occurredAt=(timezone.now() - dt.timedelta(hours=2)).isoformat())
    batch = driven.batch([batch_event(units=7), batch_event(units="0.5")])
    ids = [int(first["id"])] + [int(e["id"]) for e in batch["events"]]

    result = driven.send()
    assert (result.sent, result.failed, result.retry_in) == (3, 0, None)
    assert driven.send().sent == 0  # run again: nothing left

    got = received(driven.peer)
    assert [e["identifier"] for e in got] == [
        meter_event_identifier(driven.env.pk, event_id) for event_id in ids
    ]
    assert [e["event_name"] for e in got] == ["tanso_tokens"] * 3
    assert [e["payload"] for e in got] == [
        {"stripe_customer_id": link.stripe_customer_id, "value": value}
        for value in ("5", "7", "0.5")
    ]
    stored = {e.pk: e for e in Event.objects.filter(pk__in=ids)}
    assert [e["timestamp"] for e in got] == [
        int(stored[event_id].occurred_at.timestamp()) for event_id in ids
    ]
    assert set(MeterEvent.objects.values_list("status", flat=True)) == {"sent"}
    # What the meter sums for the customer, as Stripe's own summary reports it.
    meter = driven.stripe.v1.billing.meters.list().data[0]
    now = int(timezone.now().timestamp())
    summary = driven.stripe.v1.billing.meters.event_summaries.list(
        meter.id,
        params={
            "customer": link.stripe_customer_id,
            "start_time": now - 86400,
            "end_time": now + 60,
        },
    )
    assert D(str(summary.data[0].aggregated_value)) == D("12.5")


def test_a_retry_after_a_crash_never_counts_an_event_twice(driven: Driven) -> None:
    _subscribed(driven)
    driven.batch([batch_event(units=n) for n in (1, 2, 3)])
    assert driven.send().sent == 3

    # A worker that died after Stripe answered, before its transaction committed: the rows
    # are pending again. Resent with the same request (same idempotency key), Stripe replays
    # its first answer...
    MeterEvent.objects.update(status="pending", sent_at=None, attempts=0)
    assert driven.send().sent == 3
    # ... and resent as a new request (another attempt), Stripe refuses the identifier it has.
    MeterEvent.objects.update(status="pending", sent_at=None, attempts=5)
    again = driven.send()
    assert (again.sent, again.duplicates) == (0, 3)

    assert [e["payload"]["value"] for e in received(driven.peer)] == ["1", "2", "3"]
    assert len(duplicates(driven.peer)) == 3
    assert set(MeterEvent.objects.values_list("status", flat=True)) == {"sent"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_send_each_event_once(driven: Driven) -> None:
    _subscribed(driven)
    driven.batch([batch_event(units=n + 1) for n in range(40)])
    results: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def sender() -> None:
        try:
            start.wait()
            results.append(meter_events_send(environment_id=driven.env.pk, batch_size=4))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sender) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert sum(r.sent for r in results) == 40
    got = received(driven.peer)
    assert len(got) == 40
    assert len({e["identifier"] for e in got}) == 40
    assert sorted(int(e["payload"]["value"]) for e in got) == list(range(1, 41))
    assert duplicates(driven.peer) == []
    assert MeterEvent.objects.filter(status="sent").count() == 40


def test_stripe_unreachable_keeps_the_rows_and_retries_with_backoff(
    driven: Driven, settings: Any
) -> None:
    _subscribed(driven)
    driven.event(units=4)
    settings.STRIPE_API_BASE = "http://127.0.0.1:1"  # nothing listens there
    down = driven.send()
    assert down.sent == 0 and down.retry_in is not None and down.retry_in.total_seconds() > 0
    row = MeterEvent.objects.get()
    assert (row.status, row.attempts) == ("pending", 1)
    assert "APIConnectionError" in row.last_error
    assert row.next_attempt_at > timezone.now()
    assert received(driven.peer) == []

    settings.STRIPE_API_BASE = driven.peer.url
    assert driven.send().sent == 0  # not due yet
    later = driven.send(now=timezone.now() + dt.timedelta(minutes=5))
    assert later.sent == 1
    assert [e["payload"]["value"] for e in received(driven.peer)] == ["4"]


def test_a_refused_event_is_flagged_and_the_others_go_on(driven: Driven) -> None:
    _subscribed(driven)
    old = (timezone.now() - dt.timedelta(days=40)).isoformat()  # beyond Stripe's 35 days
    driven.batch([batch_event(units=1, occurredAt=old), batch_event(units=2)])
    result = driven.send()
    assert (result.sent, result.failed) == (1, 1)
    failed = MeterEvent.objects.get(status="failed")
    assert "35 calendar days" in failed.last_error
    assert [e["payload"]["value"] for e in received(driven.peer)] == ["2"]
    assert driven.send().failed == 0  # flagged once, not retried in a loop


def test_credit_covered_units_are_not_sent(driven: Driven) -> None:
    link = _subscribed(driven, tokens=rule(price="0.01", credits="AI", per_unit="1"))
    driven.pool(grant="100")  # hard limit: 100 credits at 1 credit per unit
    covered = driven.event(units=60)
    assert covered["creditsDeducted"] == "60"
    part = driven.event(units=60)  # 40 covered, 20 beyond the balance
    assert part["creditShortfall"] == "20"
    none = driven.event(units=10)  # nothing left: all 10 uncovered
    driven.send()

    got = received(driven.peer)
    assert [e["payload"]["value"] for e in got] == ["20", "10"]
    assert {e["payload"]["stripe_customer_id"] for e in got} == {link.stripe_customer_id}
    assert not MeterEvent.objects.filter(event_id=int(covered["id"])).exists()
    assert MeterEvent.objects.get(event_id=int(part["id"])).value == D(20)
    assert MeterEvent.objects.get(event_id=int(none["id"])).value == D(10)


def test_a_soft_pool_going_negative_sends_the_part_below_zero(driven: Driven) -> None:
    _subscribed(driven, tokens=rule(price="0.01", credits="AI", per_unit="2"))
    driven.pool(hard=False, grant="10")  # 2 credits per unit: 5 units' worth
    driven.event(units=8)  # 16 credits: 10 covered (5 units), 6 below zero (3 units)
    driven.event(units=1)  # the balance is already negative: uncovered
    driven.send()
    assert [e["payload"]["value"] for e in received(driven.peer)] == ["3", "1"]


def test_events_wait_for_their_stripe_customer(driven: Driven) -> None:
    _subscribed(driven)
    plan = driven.plan("team", {"tokens": rule(price="0.002")})
    later = driven.subscribe(plan, "cus_2")  # not provisioned yet
    driven.event(units=3, ref="cus_2")
    driven.event(units=1)
    first = driven.send()
    assert (first.sent, first.blocked) == (1, 1)
    blocked = MeterEvent.objects.get(status="blocked")
    assert "no Stripe customer" in blocked.last_error

    driven.provision(later)  # makes the Stripe customer: the row goes back to pending
    assert MeterEvent.objects.get(pk=blocked.pk).status == "pending"
    assert driven.send().sent == 1
    assert sorted(e["payload"]["value"] for e in received(driven.peer)) == ["1", "3"]


def test_a_customer_first_seen_in_an_event_reaches_stripe_with_the_catch_up(
    driven: Driven,
) -> None:
    _subscribed(driven)
    driven.event(units=6, ref="walk_in")  # auto-created by the event: no subscription here
    assert driven.send().blocked == 1
    assert stripe_environment_provision(environment=driven.env).customers == 1
    link = StripeCustomer.objects.get(customer__reference_id="walk_in")
    assert driven.send().sent == 1
    (got,) = received(driven.peer, customer=link.stripe_customer_id)
    assert got["payload"]["value"] == "6"
    assert stripe_environment_provision(environment=driven.env).customers == 0


def test_zero_unit_events_send_nothing(driven: Driven) -> None:
    _subscribed(driven)
    driven.event(units=0)
    assert not MeterEvent.objects.exists()


@pytest.mark.parametrize("mode", ["none", "pass_through", "import"])
def test_other_modes_write_nothing_and_pay_nothing(
    tenant: Any,
    stripe_peer: StripePeer,
    django_capture_on_commit_callbacks: Any,
    django_assert_num_queries: Any,
    mode: str,
) -> None:
    stripe_peer.flush()
    other = make_driven(tenant, stripe_peer, django_capture_on_commit_callbacks, mode=mode)
    plan = other.plan(features={"tokens": rule(price="0.002")})
    other.subscribe(plan)
    other.customer()
    other.event(units=5)
    other.batch([batch_event(units=1), batch_event(units=2)])
    assert not MeterEvent.objects.exists()
    assert other.send().sent == 0
    assert received(stripe_peer) == []
    # The step is not among the environment's steps, and asking costs no query once cached.
    assert "stripe_meters" not in [s.name for s in steps_for(other.env)]
    with django_assert_num_queries(0):
        assert ingestion.is_stripe_driven(other.env.pk) is False


def test_a_mode_change_is_seen_by_ingestion(driven: Driven) -> None:
    from apps.billing.services import billing_settings_update

    _subscribed(driven)
    with driven.capture(execute=True):
        billing_settings_update(environment=driven.env, stripe_mode="none")
    driven.event(units=1)
    assert not MeterEvent.objects.exists()
    with driven.capture(execute=False):
        billing_settings_update(environment=driven.env, stripe_mode="stripe_driven")
    driven.event(units=2)
    assert list(MeterEvent.objects.values_list("value", flat=True)) == [D(2)]


def test_tenants_and_environments_are_kept_apart(
    driven: Driven, outsider: Any, django_capture_on_commit_callbacks: Any
) -> None:
    mine = _subscribed(driven)
    theirs_env = make_driven(outsider, driven.peer, django_capture_on_commit_callbacks)
    theirs = _subscribed(theirs_env)
    live = make_driven(driven.tenant, driven.peer, django_capture_on_commit_callbacks, kind="live")
    live_link = _subscribed(live)

    driven.event(units=1)
    theirs_env.event(units=20)
    live.event(units=300)

    # Sending for one environment sends only its own rows.
    assert driven.send().sent == 1
    assert [
        (e["payload"]["stripe_customer_id"], e["payload"]["value"]) for e in received(driven.peer)
    ] == [(mine.stripe_customer_id, "1")]
    assert MeterEvent.objects.filter(status="pending").count() == 2

    assert theirs_env.send().sent == 1
    assert live.send().sent == 1
    by_customer = {
        e["payload"]["stripe_customer_id"]: e["payload"]["value"] for e in received(driven.peer)
    }
    assert by_customer == {
        mine.stripe_customer_id: "1",
        theirs.stripe_customer_id: "20",
        live_link.stripe_customer_id: "300",
    }
    identifiers = {e["identifier"] for e in received(driven.peer)}
    assert all(
        any(i.startswith(f"tanso-{env.pk}-") for env in (driven.env, theirs_env.env, live.env))
        for i in identifiers
    )
