"""Writes: rules (and the defaults every environment gets), acknowledging fired alerts,
webhook endpoints (secret shown once, rotation, test-send, replay)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.utils import timezone

from apps.core import crypto
from apps.core.tenancy import scoped

from . import signing
from .models import (
    AlertRule,
    AlertState,
    Channel,
    Delivery,
    Metric,
    Notification,
    Operator,
    Scope,
    Severity,
    WebhookEndpoint,
    Window,
)
from .transitions import kick, message_id

if TYPE_CHECKING:
    from apps.accounts.models import Environment

ALL_CHANNELS = [Channel.DASHBOARD, Channel.EMAIL, Channel.WEBHOOK]
ROTATION_OVERLAP = dt.timedelta(hours=24)

DEFAULT_RULES: list[dict[str, Any]] = [
    {
        "default_key": "unpriced",
        "name": "Events of a model with no price",
        "metric": Metric.UNPRICED_EVENTS,
        "scope": Scope.MODEL,
        "window": Window.DAY,
        "operator": Operator.GT,
        "thresholds": [{"value": "0", "severity": Severity.WARNING}],
    },
    {
        "default_key": "key_budget",
        "name": "API key budget",
        "metric": Metric.KEY_BUDGET_PERCENT,
        "scope": Scope.API_KEY,
        "window": Window.BUDGET_PERIOD,
        "operator": Operator.GTE,
        "thresholds": [
            {"value": "80", "severity": Severity.WARNING},
            {"value": "100", "severity": Severity.CRITICAL},
        ],
    },
    {
        "default_key": "cost_spike",
        "name": "Daily cost spike",
        "metric": Metric.COST_SPIKE,
        "scope": Scope.ENVIRONMENT,
        "window": Window.DAY,
        "operator": Operator.GTE,
        "thresholds": [{"value": "2", "severity": Severity.WARNING}],
    },
    {
        "default_key": "customer_margin",
        "name": "A customer's 7-day margin below zero",
        "metric": Metric.MARGIN_AMOUNT,
        "scope": Scope.CUSTOMER,
        "window": Window.WEEK,
        "operator": Operator.LT,
        "thresholds": [{"value": "0", "severity": Severity.CRITICAL}],
    },
]

_MARK_DEFAULTS = """
INSERT INTO alerts_alertdefaults (environment_id, created_at) VALUES (%s, %s)
ON CONFLICT (environment_id) DO NOTHING
RETURNING id
"""


def defaults_ensure(*, environment: Environment | uuid.UUID) -> bool:
    """Create the default rules once per environment (a deleted one stays deleted);
    True when they were created now."""
    env_id: uuid.UUID = getattr(environment, "pk", environment)  # type: ignore[arg-type]
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_MARK_DEFAULTS, [env_id, now])
        if cursor.fetchone() is None:
            return False
        AlertRule.objects.bulk_create(
            AlertRule(
                environment_id=env_id,
                channels=list(ALL_CHANNELS),
                created_at=now,
                updated_at=now,
                **spec,
            )
            for spec in DEFAULT_RULES
        )
    return True


def rule_create(*, environment: Environment, **fields: Any) -> AlertRule:
    fields.setdefault("channels", list(ALL_CHANNELS))
    now = timezone.now()
    return AlertRule.objects.create(
        environment=environment, created_at=now, updated_at=now, **fields
    )


# Changing what a rule watches starts its states afresh (an old threshold's firing state
# would otherwise never be evaluated again, nor resolve).
REDEFINING = frozenset(
    {
        "metric",
        "scope",
        "window",
        "operator",
        "thresholds",
        "customer",
        "feature",
        "model",
        "api_key",
    }
)


def rule_update(*, rule: AlertRule, changes: dict[str, Any]) -> AlertRule:
    with transaction.atomic():
        redefined = any(
            getattr(rule, name) != value for name, value in changes.items() if name in REDEFINING
        )
        for name, value in changes.items():
            setattr(rule, name, value)
        rule.updated_at = timezone.now()
        rule.save()
        if redefined:
            scoped(AlertState, rule.environment_id).filter(rule=rule).delete()
    return rule


def rule_delete(*, rule: AlertRule) -> None:
    rule.delete()


def notification_acknowledge(*, notification: Notification, by: str) -> Notification:
    """Idempotent: the first acknowledgement's time and author stay."""
    if notification.acknowledged_at is None:
        notification.acknowledged_at = timezone.now()
        notification.acknowledged_by = by[:200]
        notification.save(update_fields=["acknowledged_at", "acknowledged_by"])
    return notification


@dataclass(frozen=True, slots=True)
class EndpointWithSecret:
    endpoint: WebhookEndpoint
    secret: str  # shown once


def endpoint_create(
    *, environment: Environment, url: str, description: str = ""
) -> EndpointWithSecret:
    secret = signing.new_secret()
    endpoint = WebhookEndpoint.objects.create(
        environment=environment,
        url=url,
        description=description,
        secret_encrypted=crypto.encrypt(secret),
        secret_hint=crypto.hint(secret),
    )
    return EndpointWithSecret(endpoint, secret)


def endpoint_update(*, endpoint: WebhookEndpoint, changes: dict[str, Any]) -> WebhookEndpoint:
    for name, value in changes.items():
        setattr(endpoint, name, value)
    if changes.get("enabled"):
        endpoint.disabled_reason = ""
        endpoint.consecutive_failures = 0
    endpoint.save()
    return endpoint


def endpoint_rotate(
    *, endpoint: WebhookEndpoint, overlap: dt.timedelta = ROTATION_OVERLAP
) -> EndpointWithSecret:
    """A new secret; the old one also signs (a second signature) until the overlap ends."""
    secret = signing.new_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted
    endpoint.previous_expires_at = timezone.now() + overlap
    endpoint.secret_encrypted = crypto.encrypt(secret)
    endpoint.secret_hint = crypto.hint(secret)
    endpoint.save(
        update_fields=[
            "previous_secret_encrypted",
            "previous_expires_at",
            "secret_encrypted",
            "secret_hint",
        ]
    )
    return EndpointWithSecret(endpoint, secret)


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    endpoint.delete()


def _outbox(
    endpoint: WebhookEndpoint,
    msg_id: str,
    payload: dict[str, Any],
    notification: Notification | None,
) -> Delivery:
    with transaction.atomic():
        delivery = Delivery.objects.create(
            environment_id=endpoint.environment_id,
            notification=notification,
            endpoint=endpoint,
            channel=Channel.WEBHOOK,
            message_id=msg_id,
            payload=payload,
        )
        transaction.on_commit(lambda: kick(endpoint.environment_id))
    return delivery


def endpoint_test(*, endpoint: WebhookEndpoint) -> Delivery:
    """Queue an ``alert.test`` message to the endpoint (delivered by the outbox)."""
    test_id = uuid.uuid4()
    payload = {
        "type": "alert.test",
        "id": str(test_id),
        "createdAt": timezone.now().isoformat(),
        "message": "A test message from Tanso alerts.",
    }
    return _outbox(endpoint, message_id(test_id), payload, None)


def delivery_replay(*, delivery: Delivery) -> Delivery:
    """Send the same message again (the same ``webhook-id``: receivers dedupe on it)."""
    if delivery.endpoint is None:
        raise ValueError("only webhook deliveries are replayed")
    return _outbox(delivery.endpoint, delivery.message_id, delivery.payload, delivery.notification)


def threshold_list(values: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Thresholds as stored: decimal strings, a severity, sorted, no repeats."""
    seen: dict[str, str] = {}
    for item in values:
        value = Decimal(item["value"]).normalize()
        seen[format(value, "f")] = item.get("severity") or Severity.WARNING
    return [
        {"value": v, "severity": s} for v, s in sorted(seen.items(), key=lambda i: Decimal(i[0]))
    ]
