"""Event delivery: never blocks the caller, never loses or doubles an event, whatever
the server does (503 for a while, a refused key, a lost answer, a fork)."""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter
from types import ModuleType
from typing import Any

import pytest

from apps.events.models import Event
from tests.conftest import Tenant
from tests.sdk.conftest import Gate


def stored_keys(tenant: Tenant) -> Counter[str]:
    return Counter(
        Event.objects.filter(environment_id=tenant.test.pk).values_list(
            "idempotency_key", flat=True
        )
    )


def track(tanso: Any, n: int, customer: str = "cus_1") -> list[str]:
    return [
        tanso.track(
            event_name="chat",
            customer_reference_id=customer,
            feature_key="chat",
            usage_units=1,
            cost_amount="0.01",
        )
        for _ in range(n)
    ]


def test_a_server_down_for_seconds_loses_and_doubles_nothing(
    tansohq: ModuleType, acme: Tenant, gate: Gate
) -> None:
    tanso = tansohq.Tanso(acme.sk_test, base_url=gate.url, batch_size=10, flush_interval=0.05)
    gate.mode = "down"
    started = time.monotonic()
    keys = track(tanso, 35)
    assert time.monotonic() - started < 0.5, "track() never waits for the server"
    time.sleep(2.5)
    assert gate.refused >= 2, "the sender kept trying while the server was down"
    assert tanso.pending() == 35
    gate.mode = "up"
    keys += track(tanso, 5)
    assert tanso.flush(timeout=30)
    assert stored_keys(acme) == Counter(keys), "every event once"
    assert Counter(gate.forwarded_event_keys) == Counter(keys), "each forwarded once"
    tanso.close()


def test_flush_returns_within_its_timeout_while_the_server_is_down(
    tansohq: ModuleType, acme: Tenant, gate: Gate
) -> None:
    tanso = tansohq.Tanso(acme.sk_test, base_url=gate.url)
    gate.mode = "down"
    track(tanso, 3)
    started = time.monotonic()
    assert tanso.flush(timeout=1) is False
    assert time.monotonic() - started < 1.5
    assert tanso.pending() == 3, "held, not dropped"
    gate.mode = "up"
    assert tanso.flush(timeout=20)
    assert sum(stored_keys(acme).values()) == 3


def test_an_answer_lost_after_the_server_stored_the_batch_is_not_stored_twice(
    tansohq: ModuleType, acme: Tenant, gate: Gate
) -> None:
    tanso = tansohq.Tanso(acme.sk_test, base_url=gate.url, flush_interval=0.05)
    gate.mode = "lose-answer-once"
    keys = track(tanso, 4)
    assert tanso.flush(timeout=20)
    # The server got the batch twice (the first answer was lost on the way back) ...
    assert len(gate.forwarded_event_keys) == 8
    # ... under one request key, and stored each event once.
    assert len(set(gate.request_keys)) == 1
    assert stored_keys(acme) == Counter(keys)
    assert tanso._delivery.delivered == 4


def test_a_refused_key_holds_events_until_it_is_accepted(
    tansohq: ModuleType, acme: Tenant, gate: Gate
) -> None:
    tanso = tansohq.Tanso(acme.sk_test, base_url=gate.url, flush_interval=0.05)
    gate.mode = "unauthorized"
    keys = track(tanso, 2)
    assert tanso.flush(timeout=1.5) is False
    assert gate.refused >= 1 and tanso.pending() == 2
    gate.mode = "up"
    assert tanso.flush(timeout=20)
    assert stored_keys(acme) == Counter(keys)


def test_rejected_items_are_reported_and_dropped_the_rest_delivered(
    tansohq: ModuleType, acme: Tenant, live_server: Any
) -> None:
    rejected: list[tuple[dict[str, Any], dict[str, Any]]] = []
    tanso = tansohq.Tanso(
        acme.sk_test,
        base_url=live_server.url,
        on_error=lambda event, detail: rejected.append((event, detail)),
    )
    good = track(tanso, 2)
    tanso.track_event({"eventName": "chat", "customerReferenceId": "cus_1", "featureKey": "chat",
                       "inputTokens": -5})  # fmt: skip
    assert tanso.flush(timeout=20)
    assert stored_keys(acme) == Counter(good)
    ((event, detail),) = rejected
    assert event["inputTokens"] == -5 and "inputTokens" in detail["fields"]


def test_a_full_buffer_calls_on_overflow_instead_of_growing(
    tansohq: ModuleType, acme: Tenant, gate: Gate
) -> None:
    overflow: list[dict[str, Any]] = []
    tanso = tansohq.Tanso(
        acme.sk_test, base_url=gate.url, max_buffer=5, on_overflow=overflow.append
    )
    gate.mode = "down"
    keys = track(tanso, 7)
    assert [event["idempotencyKey"] for event in overflow] == keys[5:]
    gate.mode = "up"
    assert tanso.flush(timeout=20)
    assert stored_keys(acme) == Counter(keys[:5])


def test_sync_delivery_sends_before_track_returns(
    tansohq: ModuleType, acme: Tenant, live_server: Any
) -> None:
    tanso = tansohq.Tanso(acme.sk_test, base_url=live_server.url, sync_delivery=True)
    (key,) = track(tanso, 1)
    assert stored_keys(acme) == Counter([key])
    assert tanso.pending() == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_resend_the_parents_queue(
    tansohq: ModuleType, acme: Tenant, gate: Gate
) -> None:
    tanso = tansohq.Tanso(acme.sk_test, base_url=gate.url, flush_interval=3600, batch_size=100)
    parent_keys = track(tanso, 3)  # queued, not yet sent
    child_key = "sdk_child_event"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        pid = os.fork()
    if pid == 0:  # the child: its own event, flushed, then gone
        code = 1
        try:
            tanso.track_event({"eventName": "chat", "customerReferenceId": "cus_child",
                               "featureKey": "chat", "usageUnits": 1, "costAmount": "0.01",
                               "idempotencyKey": child_key})  # fmt: skip
            code = 0 if tanso.flush(timeout=20) and tanso.pending() == 0 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert tanso.flush(timeout=20)
    assert Counter(gate.forwarded_event_keys) == Counter([*parent_keys, child_key])
    assert stored_keys(acme) == Counter([*parent_keys, child_key])
