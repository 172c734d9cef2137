"""Retries racing each other through a real server store one event, once."""

from __future__ import annotations

import threading

import pytest
import requests

from apps.events.models import Event, HourlyRollup
from tests.conftest import make_tenant
from tests.events.conftest import rollup_mismatches

THREADS = 8


def race(url: str, headers: dict, body: dict) -> list[requests.Response]:
    barrier = threading.Barrier(THREADS)
    responses: list[requests.Response] = []
    lock = threading.Lock()

    def call() -> None:
        barrier.wait()
        response = requests.post(url, json=body, headers=headers, timeout=30)
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=call) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_one_event_store_it_once(live_server):
    tenant = make_tenant("Racing")
    body = {
        "eventIdempotencyKey": "retry-me",
        "eventName": "chat",
        "customerReferenceId": "cus_new",
        "featureKey": "brand_new_feature",
        "costAmount": "0.25",
        "revenueAmount": "1.10",
    }
    responses = race(
        f"{live_server.url}/api/v1/client/events",
        {"Authorization": f"Bearer {tenant.sk_test}"},
        body,
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (THREADS - 1), [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "duplicate_event"
    assert Event.objects.filter(idempotency_key="retry-me").count() == 1
    rollup = HourlyRollup.objects.get()
    assert rollup.event_count == 1
    assert str(rollup.cost_usd.normalize()) == "0.25"
    assert rollup_mismatches() == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_overlapping_batches_store_each_event_once(live_server):
    tenant = make_tenant("Batches")
    events = [
        {
            "idempotencyKey": f"k-{i}",
            "eventName": "chat",
            "customerReferenceId": f"cus_{i % 5}",
            "featureKey": f"f_{i % 3}",
            "costAmount": "0.001",
        }
        for i in range(200)
    ]
    responses = race(
        f"{live_server.url}/api/events/ingest",
        {"Authorization": f"Bearer {tenant.sk_test}"},
        {"events": events},
    )
    assert all(r.status_code in (200, 201, 207) for r in responses), [r.text for r in responses]
    accepted = sum(r.json()["accepted"] for r in responses)
    duplicates = sum(r.json()["duplicates"] for r in responses)
    assert accepted == 200
    assert accepted + duplicates == 200 * THREADS
    assert Event.objects.count() == 200
    assert sum(HourlyRollup.objects.values_list("event_count", flat=True)) == 200
    assert rollup_mismatches() == []
