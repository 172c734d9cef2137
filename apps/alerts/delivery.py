"""Draining the outbox: due ``Delivery`` rows are locked ``FOR UPDATE SKIP LOCKED`` (two
drainers never take the same row), sent, logged (``DeliveryAttempt``) and marked.

* Webhooks: signed (``signing``) with the endpoint's secret, and with its previous one
  too while a rotation overlaps; the ``webhook-id`` is the delivery's ``message_id``,
  the same on every retry. A 2xx is delivered; anything else is retried on
  ``BACKOFF`` (about 28 hours in all) with +-20 % jitter, then failed. An endpoint
  whose last ``DISABLE_AFTER`` attempts all failed is disabled and its organization's
  owners and admins are emailed. Only URLs that ``outbound.check`` allows are called,
  with a ``TIMEOUT`` of a few seconds and no redirects.
* Email: through Django's email backend (the console backend, i.e. the log, when none
  is configured) to the organization's owners and admins.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
import uuid

import httpx2
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import Environment, Membership, Role
from apps.core import crypto
from apps.core.tenancy import scoped, scoped_to_org

from . import outbound, signing
from .models import Channel, Delivery, DeliveryAttempt, WebhookEndpoint

logger = logging.getLogger(__name__)

TIMEOUT = 5.0  # seconds, connect and read
BATCH = 20
SNIPPET = 500
# Delay before attempt n+2 after attempt n+1 failed (Standard Webhooks' usual schedule).
BACKOFF = [
    dt.timedelta(seconds=5),
    dt.timedelta(minutes=5),
    dt.timedelta(minutes=30),
    dt.timedelta(hours=2),
    dt.timedelta(hours=5),
    dt.timedelta(hours=10),
    dt.timedelta(hours=10),
]
DISABLE_AFTER = 20  # consecutive failed attempts of an endpoint


def body_of(delivery: Delivery) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


def endpoint_secrets(endpoint: WebhookEndpoint, now: dt.datetime) -> list[str]:
    out = [crypto.decrypt(endpoint.secret_encrypted)]
    if endpoint.previous_secret_encrypted and (
        endpoint.previous_expires_at is None or endpoint.previous_expires_at > now
    ):
        out.append(crypto.decrypt(endpoint.previous_secret_encrypted))
    return out


def _post(delivery: Delivery, endpoint: WebhookEndpoint, now: dt.datetime) -> DeliveryAttempt:
    attempt = DeliveryAttempt(environment_id=delivery.environment_id, delivery=delivery)
    body = body_of(delivery)
    started = time.monotonic()
    try:
        outbound.check(endpoint.url)
        head = signing.headers(
            endpoint_secrets(endpoint, now), delivery.message_id, int(time.time()), body
        )
        response = httpx2.post(
            endpoint.url, content=body, headers=head, timeout=TIMEOUT, follow_redirects=False
        )
        attempt.status_code = response.status_code
        attempt.response_snippet = response.text[:SNIPPET]
        attempt.succeeded = 200 <= response.status_code < 300
    except (outbound.UnsafeUrl, httpx2.HTTPError, crypto.InvalidToken) as exc:
        attempt.error = f"{type(exc).__name__}: {exc}"[:SNIPPET]
    attempt.latency_ms = int((time.monotonic() - started) * 1000)
    return attempt


def owner_emails(environment_id: uuid.UUID | str) -> list[str]:
    org_id = Environment.objects.values_list("organization_id", flat=True).get(pk=environment_id)
    return sorted(
        email
        for email in scoped_to_org(Membership, org_id)
        .filter(role__in=[Role.OWNER, Role.ADMIN])
        .values_list("user__email", flat=True)
        if email
    )


def _email(delivery: Delivery) -> DeliveryAttempt:
    attempt = DeliveryAttempt(environment_id=delivery.environment_id, delivery=delivery)
    payload = delivery.payload
    subject = f"[Tanso] {payload.get('type')}: {payload.get('rule', {}).get('name', 'alert')}"
    started = time.monotonic()
    try:
        sent = send_mail(
            subject,
            json.dumps(payload, indent=2, sort_keys=True),
            None,
            owner_emails(delivery.environment_id),
        )
        attempt.succeeded = True
        attempt.response_snippet = f"sent to {sent} recipient list(s)"
    except Exception as exc:
        attempt.error = f"{type(exc).__name__}: {exc}"[:SNIPPET]
    attempt.latency_ms = int((time.monotonic() - started) * 1000)
    return attempt


def _after_failure(delivery: Delivery, now: dt.datetime) -> None:
    if delivery.attempts > len(BACKOFF):
        delivery.status = Delivery.Status.FAILED
        return
    delay = BACKOFF[delivery.attempts - 1].total_seconds() * random.uniform(0.8, 1.2)  # noqa: S311
    delivery.next_attempt_at = now + dt.timedelta(seconds=delay)


def _endpoint_result(endpoint: WebhookEndpoint, succeeded: bool) -> None:
    if succeeded:
        endpoint.consecutive_failures = 0
    else:
        endpoint.consecutive_failures += 1
        if endpoint.enabled and endpoint.consecutive_failures >= DISABLE_AFTER:
            endpoint.enabled = False
            endpoint.disabled_reason = f"{DISABLE_AFTER} failed attempts in a row"
            transaction.on_commit(lambda: _tell_disabled(endpoint))
    endpoint.save(update_fields=["consecutive_failures", "enabled", "disabled_reason"])


def _tell_disabled(endpoint: WebhookEndpoint) -> None:
    try:
        send_mail(
            "[Tanso] A webhook endpoint was disabled",
            f"Alerts stopped going to {endpoint.url}: {endpoint.disabled_reason}. "
            "Fix the receiver and enable the endpoint again in the dashboard or the API.",
            None,
            owner_emails(endpoint.environment_id),
        )
    except Exception:
        logger.exception("alerts: could not email about the disabled endpoint %s", endpoint.pk)


def deliver_one(delivery: Delivery, now: dt.datetime) -> DeliveryAttempt:
    """One attempt of a locked delivery; updates it, its endpoint and the log."""
    endpoint = delivery.endpoint
    if delivery.channel == Channel.WEBHOOK:
        assert endpoint is not None
        attempt = _post(delivery, endpoint, now)
    else:
        attempt = _email(delivery)
    attempt.attempted_at = now
    attempt.save()
    delivery.attempts += 1
    if attempt.succeeded:
        delivery.status = Delivery.Status.DELIVERED
        delivery.delivered_at = now
        delivery.last_error = ""
    else:
        delivery.last_error = (attempt.error or f"HTTP {attempt.status_code}")[:SNIPPET]
        _after_failure(delivery, now)
    delivery.save(
        update_fields=["status", "attempts", "next_attempt_at", "last_error", "delivered_at"]
    )
    if endpoint is not None:
        _endpoint_result(endpoint, attempt.succeeded)
    return attempt


def deliver_due(*, environment_id: uuid.UUID | str, now: dt.datetime | None = None) -> int:
    """Send the environment's due deliveries; returns how many attempts were made."""
    made = 0
    while True:
        at = now or timezone.now()
        with transaction.atomic():
            rows = list(
                scoped(Delivery.objects.select_for_update(skip_locked=True), environment_id)
                .filter(status=Delivery.Status.PENDING, next_attempt_at__lte=at)
                .order_by("next_attempt_at", "id")[:BATCH]
            )
            endpoints = {
                e.pk: e
                for e in scoped(WebhookEndpoint, environment_id).filter(
                    pk__in={r.endpoint_id for r in rows if r.endpoint_id}
                )
            }
            for row in rows:
                row.endpoint = endpoints.get(row.endpoint_id) if row.endpoint_id else None
                if row.channel == Channel.WEBHOOK and (
                    row.endpoint is None or not row.endpoint.enabled
                ):
                    row.status = Delivery.Status.FAILED
                    row.last_error = "the endpoint is disabled"
                    row.save(update_fields=["status", "last_error"])
                    continue
                deliver_one(row, at)
                made += 1
        if len(rows) < BATCH:
            return made


def due_environments(now: dt.datetime | None = None) -> list[uuid.UUID]:
    """Environments with due deliveries (the sweep's cross-tenant read of ids only)."""
    return list(
        Delivery.objects.filter(
            status=Delivery.Status.PENDING, next_attempt_at__lte=now or timezone.now()
        )
        .values_list("environment_id", flat=True)
        .distinct()
    )
