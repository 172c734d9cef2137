"""Reads of alerts, taking the environment first (another tenant's object is a 404)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from apps.core.tenancy import get_scoped_or_404, scoped

from .models import AlertRule, Delivery, Notification, WebhookEndpoint

if TYPE_CHECKING:
    from apps.accounts.models import Environment


def rules_of(environment: Environment) -> QuerySet[AlertRule]:
    return scoped(AlertRule, environment).select_related("environment")


def rule_get(environment: Environment, rule_id: str) -> AlertRule:
    return get_scoped_or_404(
        AlertRule.objects.select_related("environment"), environment, pk=rule_id
    )


def notifications_of(
    environment: Environment,
    *,
    unacknowledged: bool = False,
    kind: str | None = None,
    severity: str | None = None,
) -> QuerySet[Notification]:
    rows = scoped(Notification, environment)
    if unacknowledged:
        rows = rows.filter(acknowledged_at__isnull=True)
    if kind:
        rows = rows.filter(kind=kind)
    if severity:
        rows = rows.filter(severity=severity)
    return rows


def unread_count(environment: Environment) -> int:
    return notifications_of(environment, unacknowledged=True).count()


def notification_get(environment: Environment, notification_id: str) -> Notification:
    return get_scoped_or_404(Notification, environment, pk=notification_id)


def endpoints_of(environment: Environment) -> QuerySet[WebhookEndpoint]:
    return scoped(WebhookEndpoint, environment)


def endpoint_get(environment: Environment, endpoint_id: str) -> WebhookEndpoint:
    return get_scoped_or_404(WebhookEndpoint, environment, pk=endpoint_id)


def deliveries_of(environment: Environment, endpoint: WebhookEndpoint) -> QuerySet[Delivery]:
    return scoped(Delivery, environment).filter(endpoint=endpoint).prefetch_related("log")


def delivery_get(environment: Environment, delivery_id: str) -> Delivery:
    return get_scoped_or_404(
        Delivery.objects.select_related("endpoint", "notification"), environment, pk=delivery_id
    )
