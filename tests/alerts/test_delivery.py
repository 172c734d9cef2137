"""The outbox drained to a real webhook receiver on loopback: Standard Webhooks
signatures, retries that keep the webhook-id, the delivery log, rotation, SSRF refusals,
automatic disabling, email."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time

import pytest
from django.core import mail

from apps.alerts import delivery as outbox
from apps.alerts import signing
from apps.alerts.evaluator import rule_evaluate
from apps.alerts.models import Delivery, DeliveryAttempt, Metric, Operator, Window
from apps.alerts.services import endpoint_create, endpoint_rotate, rule_create
from apps.core.tenancy import scoped
from tests.alerts.helpers import ingest, receiver

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC)


def fire(env, channels=("webhook",)):
    rule = rule_create(
        environment=env,
        name="Cost over $5 a day",
        metric=Metric.COST,
        window=Window.DAY,
        operator=Operator.GTE,
        thresholds=[{"value": "5", "severity": "critical"}],
        channels=list(channels),
    )
    ingest(env, cost="6", at=NOON - dt.timedelta(hours=1))
    (notification,) = rule_evaluate(rule=rule, now=NOON)
    return notification


def spec_verify(secret: str, headers: dict[str, str], body: bytes, now: int) -> bool:
    """Standard Webhooks verification written from the spec, apart from apps.alerts."""
    msg_id, ts = headers["webhook-id"], int(headers["webhook-timestamp"])
    if abs(now - ts) > 300:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    return any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split())


def test_500_twice_then_200_gets_the_same_webhook_id_and_three_logged_attempts(tenant):
    env = tenant.test
    with receiver([500, 500]) as hook:
        made = endpoint_create(environment=env, url=hook.url)
        notification = fire(env)
        assert outbox.deliver_due(environment_id=env.pk, now=NOON) == 1
        # Not due again before its backoff (5 s +- 20 %).
        assert outbox.deliver_due(environment_id=env.pk, now=NOON + dt.timedelta(seconds=3)) == 0
        assert outbox.deliver_due(environment_id=env.pk, now=NOON + dt.timedelta(seconds=10)) == 1
        assert outbox.deliver_due(environment_id=env.pk, now=NOON + dt.timedelta(hours=1)) == 1
        assert outbox.deliver_due(environment_id=env.pk, now=NOON + dt.timedelta(days=2)) == 0
    assert len(hook.received) == 3
    ids = {r.headers["webhook-id"] for r in hook.received}
    assert ids == {f"msg_{notification.pk.hex}"}
    now = int(time.time())
    for request in hook.received:
        assert spec_verify(made.secret, request.headers, request.body, now)
        assert signing.verify(made.secret, request.headers, request.body, now=now)
        assert json.loads(request.body)["type"] == "alert.triggered"
    delivery = scoped(Delivery, env).get()
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    log = list(scoped(DeliveryAttempt, env).order_by("attempted_at"))
    assert [a.status_code for a in log] == [500, 500, 200]
    assert [a.succeeded for a in log] == [False, False, True]
    assert log[0].response_snippet == "answer 500"
    body = tenant.api().get(f"/api/alert-webhooks/{made.endpoint.pk}/deliveries").json()
    (item,) = body["items"]
    assert item["webhookId"] == f"msg_{notification.pk.hex}"
    assert [a["statusCode"] for a in item["log"]] == [500, 500, 200]


def test_a_wrong_secret_or_an_old_timestamp_fails_verification(tenant):
    env = tenant.test
    with receiver() as hook:
        made = endpoint_create(environment=env, url=hook.url)
        fire(env)
        outbox.deliver_due(environment_id=env.pk, now=NOON)
    (request,) = hook.received
    now = int(request.headers["webhook-timestamp"])
    assert spec_verify(made.secret, request.headers, request.body, now)
    assert not spec_verify(signing.new_secret(), request.headers, request.body, now)
    assert not spec_verify(made.secret, request.headers, request.body, now + 301)
    assert signing.verify(made.secret, request.headers, request.body, now=now)
    assert not signing.verify(signing.new_secret(), request.headers, request.body, now=now)
    assert not signing.verify(made.secret, request.headers, request.body + b" ", now=now)
    assert not signing.verify(made.secret, request.headers, request.body, now=now + 301)
    replayed = {**request.headers, "webhook-timestamp": str(now - 301)}
    assert not signing.verify(made.secret, replayed, request.body, now=now)


def test_after_a_rotation_both_secrets_sign_until_the_overlap_ends(tenant):
    env = tenant.test
    with receiver() as hook:
        made = endpoint_create(environment=env, url=hook.url)
        rotated = endpoint_rotate(endpoint=made.endpoint)
        assert rotated.secret != made.secret
        fire(env)
        outbox.deliver_due(environment_id=env.pk, now=NOON)
        rotated.endpoint.previous_expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        rotated.endpoint.save()
        tenant.api().post(f"/api/alert-webhooks/{made.endpoint.pk}/test")
        outbox.deliver_due(environment_id=env.pk)
    during, after = hook.received
    now = int(time.time())
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert signing.verify(made.secret, during.headers, during.body, now=now)
    assert signing.verify(rotated.secret, during.headers, during.body, now=now)
    assert json.loads(after.body)["type"] == "alert.test"
    assert not signing.verify(made.secret, after.headers, after.body, now=now)
    assert signing.verify(rotated.secret, after.headers, after.body, now=now)


def test_private_addresses_are_refused_in_production(tenant, settings):
    env = tenant.test
    with receiver() as hook:
        endpoint_create(environment=env, url=hook.url)
        fire(env)
        settings.PRODUCTION = True
        outbox.deliver_due(environment_id=env.pk, now=NOON)
    assert hook.received == []
    attempt = scoped(DeliveryAttempt, env).get()
    assert "UnsafeUrl" in attempt.error and not attempt.succeeded
    answer = tenant.api().post(
        "/api/alert-webhooks", {"url": "http://hooks.example.com/x"}, format="json"
    )
    assert answer.status_code == 400
    assert "url" in answer.json()["error"]["fields"]


def test_plain_http_is_only_for_loopback(tenant):
    answer = tenant.api().post(
        "/api/alert-webhooks", {"url": "http://hooks.example.com/x"}, format="json"
    )
    assert answer.status_code == 400
    answer = tenant.api().post("/api/alert-webhooks", {"url": "ftp://127.0.0.1/x"}, format="json")
    assert answer.status_code == 400


def test_an_endpoint_that_keeps_failing_is_disabled_and_the_owner_emailed(
    tenant, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(outbox, "DISABLE_AFTER", 2)
    env = tenant.test
    with receiver([500] * 10) as hook:
        made = endpoint_create(environment=env, url=hook.url)
        fire(env)
        with django_capture_on_commit_callbacks(execute=True):
            outbox.deliver_due(environment_id=env.pk, now=NOON)
            outbox.deliver_due(environment_id=env.pk, now=NOON + dt.timedelta(minutes=1))
    made.endpoint.refresh_from_db()
    assert not made.endpoint.enabled
    assert "failed attempts" in made.endpoint.disabled_reason
    assert len(hook.received) == 2
    (message,) = mail.outbox
    assert tenant.owner.email in message.to and hook.url in message.body
    # Nothing more goes to a disabled endpoint.
    assert outbox.deliver_due(environment_id=env.pk, now=NOON + dt.timedelta(days=1)) == 0
    assert scoped(Delivery, env).get().status == "failed"


def test_email_goes_to_the_owners_through_djangos_backend(tenant):
    env = tenant.test
    fire(env, channels=("email", "dashboard"))
    assert outbox.deliver_due(environment_id=env.pk, now=NOON) == 1
    (message,) = mail.outbox
    assert message.to == [tenant.owner.email]
    assert "alert.triggered" in message.subject
    assert '"cost": "6"' in message.body


def test_replay_sends_the_same_message_again(tenant):
    env = tenant.test
    with receiver() as hook:
        endpoint_create(environment=env, url=hook.url)
        fire(env)
        outbox.deliver_due(environment_id=env.pk, now=NOON)
        delivery = scoped(Delivery, env).get()
        answer = tenant.api().post(f"/api/alert-deliveries/{delivery.pk}/replay")
        assert answer.status_code == 202, answer.json()
        outbox.deliver_due(environment_id=env.pk)
    first, again = hook.received
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    assert first.body == again.body
