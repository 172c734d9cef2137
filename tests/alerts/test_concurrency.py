"""Exactly once, end to end: 20 concurrent ingestion requests through a real server push
a key's spend past 80 % of its budget; the ingestion step wakes a real Celery worker, which
evaluates the key's budget rule and delivers to a real receiver on loopback: exactly one
alert.triggered arrives, verifiable with the endpoint's secret. Evaluators racing each
other make no second one."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import pytest
import requests
from django.db import connection
from django.utils import timezone

from apps.alerts import signing
from apps.alerts.evaluator import environment_evaluate, rule_evaluate
from apps.alerts.models import AlertRule, Metric, Notification, Operator, Window
from apps.alerts.services import defaults_ensure, endpoint_create, rule_create
from apps.core.tenancy import scoped
from tests.alerts.helpers import ingest, receiver
from tests.conftest import make_tenant
from tests.factories import make_key

THREADS = 20


def _race(url: str, key: str) -> list[int]:
    barrier = threading.Barrier(THREADS)
    statuses: list[int] = []
    lock = threading.Lock()

    def call(n: int) -> None:
        body = {
            "eventIdempotencyKey": f"spend-{n}",
            "eventName": "chat",
            "customerReferenceId": "cus_1",
            "featureKey": "chat",
            "costAmount": "0.45",
        }
        barrier.wait()
        answer = requests.post(
            url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
        with lock:
            statuses.append(answer.status_code)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def _wait_for(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_requests_past_80_percent_deliver_exactly_one_alert(
    live_server, celery_worker
):
    tenant = make_tenant("Racing")
    env = tenant.test
    defaults_ensure(environment=env)
    key = make_key(env, "obs", scopes=["events.write"], budget_cents=1000, budget_period="month")
    with receiver() as hook:
        made = endpoint_create(environment=env, url=hook.url)
        statuses = _race(f"{live_server.url}/api/v1/client/events", key.plaintext)
        assert statuses == [201] * THREADS
        # The ingestion step woke the worker: no beat runs in this test.
        _wait_for(lambda: any(b'"key_budget_percent"' in r.body for r in hook.received))
        # Evaluators racing each other on the same crossing: no second notification.
        racers = [
            threading.Thread(target=environment_evaluate, kwargs={"environment_id": env.pk})
            for _ in range(4)
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        time.sleep(2.5)  # any duplicate would have been delivered by now
    messages = [(json.loads(r.body), r) for r in hook.received]
    budget = [(p, r) for p, r in messages if p["rule"]["metric"] == "key_budget_percent"]
    # The customer also lost money (cost, no revenue): the default margin rule fired once.
    others = sorted(
        p["rule"]["metric"] for p, _ in messages if p["rule"]["metric"] != "key_budget_percent"
    )
    assert others == ["margin_amount"]
    assert len(budget) == 1
    ((payload, request),) = budget
    assert signing.verify(made.secret, request.headers, request.body, now=int(time.time()))
    assert payload["type"] == "alert.triggered"
    assert payload["threshold"] == "80"
    assert payload["observed"] == "90"
    assert payload["subject"]["apiKeyId"] == str(key.key.pk)
    assert payload["money"]["cost"] == "9"
    assert scoped(Notification, env).filter(metric="key_budget_percent").count() == 1


@pytest.mark.django_db(transaction=True)
def test_evaluators_racing_on_a_fresh_crossing_make_one_notification():
    tenant = make_tenant("Racers")
    env = tenant.test
    rule = rule_create(
        environment=env,
        name="cost",
        metric=Metric.COST,
        window=Window.DAY,
        operator=Operator.GTE,
        thresholds=[{"value": "1", "severity": "warning"}, {"value": "2", "severity": "critical"}],
        channels=["dashboard"],
    )
    ingest(env, cost="3", at=timezone.now() - dt.timedelta(minutes=5))
    barrier = threading.Barrier(6)
    made: list[int] = []

    def evaluate() -> None:
        barrier.wait()
        made.append(len(rule_evaluate(rule=AlertRule.objects.get(pk=rule.pk))))
        connection.close()

    racers = [threading.Thread(target=evaluate) for _ in range(6)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sum(made) == 2  # one per threshold, whoever won
    assert scoped(Notification, env).count() == 2
