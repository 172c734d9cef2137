"""Alert rules, the state of each (rule, subject, threshold), fired alerts (the inbox and
the outbox's source), webhook endpoints and the delivery outbox with its attempt log.

A state moves ok -> firing -> resolved (-> firing again) by one SQL statement each
(``transitions.py``), so any number of evaluators produce one notification per transition.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from apps.core.money import EVENT_DECIMAL_PLACES, EVENT_MAX_DIGITS
from apps.core.tenancy import EnvironmentOwned


class Metric(models.TextChoices):
    COST = "cost", "Cost (USD)"
    REVENUE = "revenue", "Revenue (USD)"
    MARGIN_PERCENT = "margin_percent", "Margin (%)"
    MARGIN_AMOUNT = "margin_amount", "Margin (USD)"
    USAGE_UNITS = "usage_units", "Usage units"
    UNPRICED_EVENTS = "unpriced_events", "Unpriced events"
    KEY_BUDGET_PERCENT = "key_budget_percent", "API key budget used (%)"
    COST_SPIKE = "cost_spike", "Cost spike (x the median window)"


class Scope(models.TextChoices):
    ENVIRONMENT = "environment", "The whole environment"
    CUSTOMER = "customer", "Each customer"
    FEATURE = "feature", "Each feature"
    MODEL = "model", "Each model"
    API_KEY = "api_key", "Each API key"
    CUSTOMER_FEATURE = "customer_feature", "Each customer x feature"


class Window(models.TextChoices):
    HOUR = "hour", "Rolling hour"
    DAY = "day", "Rolling 24 hours"
    WEEK = "7d", "Rolling 7 days"
    MONTH = "30d", "Rolling 30 days"
    CALENDAR_DAY = "calendar_day", "Calendar day (UTC)"
    CALENDAR_MONTH = "calendar_month", "Calendar month (UTC)"
    BUDGET_PERIOD = "budget_period", "The API key's budget period"


class Operator(models.TextChoices):
    GT = "gt", "above"
    GTE = "gte", "at or above"
    LT = "lt", "below"
    LTE = "lte", "at or below"


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class Channel(models.TextChoices):
    DASHBOARD = "dashboard", "Dashboard inbox"
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhooks"


def _amount(default: Decimal) -> models.DecimalField:
    return models.DecimalField(
        max_digits=EVENT_MAX_DIGITS, decimal_places=EVENT_DECIMAL_PLACES, default=default
    )


class AlertRule(EnvironmentOwned):
    """What to watch (metric over a window, per subject of a scope) and when to tell.

    ``thresholds``: ``[{"value": "80", "severity": "warning"}, ...]`` (decimal strings);
    each has its own state per subject. ``recovery_margin``: a firing state resolves only
    once the value is back past its threshold by this much (metric units).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    metric = models.CharField(max_length=24, choices=Metric.choices)
    scope = models.CharField(max_length=24, choices=Scope.choices, default=Scope.ENVIRONMENT)
    window = models.CharField(max_length=16, choices=Window.choices, default=Window.DAY)
    operator = models.CharField(max_length=3, choices=Operator.choices, default=Operator.GTE)
    thresholds = models.JSONField(default=list)
    channels = ArrayField(models.CharField(max_length=16), default=list, blank=True)
    enabled = models.BooleanField(default=True)
    recovery_margin = _amount(default=Decimal(0))
    renotify_minutes = models.PositiveIntegerField(null=True, blank=True)
    # Restrict the rule to one subject (null: every subject of the scope).
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    feature = models.ForeignKey(
        "features.Feature", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    model = models.CharField(max_length=200, blank=True, default="")
    api_key = models.ForeignKey(
        "apikeys.ApiKey", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    # Cost spike: at least ``spike_floor_usd`` and ``min_windows`` prior windows with usage.
    spike_floor_usd = _amount(default=Decimal(5))
    spike_min_windows = models.PositiveSmallIntegerField(default=7)
    # Set on the rules created by default ("unpriced", "key_budget", ...), once per env.
    default_key = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["environment", "-created_at"], name="alertrule_env")]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "default_key"],
                condition=~models.Q(default_key=""),
                name="alertrule_default_once",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class AlertDefaults(EnvironmentOwned):
    """Marks an environment whose default rules were created (so a deleted one stays gone)."""

    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment"], name="alertdefaults_one_per_env")
        ]


class AlertState(EnvironmentOwned):
    class Status(models.TextChoices):
        FIRING = "firing", "Firing"
        RESOLVED = "resolved", "Resolved"

    id = models.BigAutoField(primary_key=True)
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="states")
    subject = models.CharField(max_length=400)  # e.g. "customer=<uuid>;feature=<uuid>"
    threshold = models.CharField(max_length=64)  # the threshold's decimal string
    status = models.CharField(max_length=8, choices=Status.choices)
    observed = models.DecimalField(max_digits=40, decimal_places=12)
    changed_at = models.DateTimeField()
    notified_at = models.DateTimeField()
    transitions = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "subject", "threshold"], name="alertstate_one_per_subject"
            )
        ]


class Notification(EnvironmentOwned):
    """One fired alert (a transition or a re-notification): the inbox row, and the
    payload every channel delivers."""

    class Kind(models.TextChoices):
        TRIGGERED = "alert.triggered", "Triggered"
        RESOLVED = "alert.resolved", "Resolved"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    rule = models.ForeignKey(
        AlertRule, on_delete=models.SET_NULL, null=True, related_name="notifications"
    )
    state = models.ForeignKey(AlertState, on_delete=models.SET_NULL, null=True, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    metric = models.CharField(max_length=24, choices=Metric.choices)
    subject = models.CharField(max_length=400)
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["environment", "-created_at"], name="alertnotif_env"),
        ]


class WebhookEndpoint(EnvironmentOwned):
    """Where signed alert webhooks go. The secret (``whsec_...``) is shown once; on
    rotation the previous one keeps signing (a second signature) until
    ``previous_expires_at``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True, default="")
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True, default="")
    secret_encrypted = models.TextField()
    secret_hint = models.CharField(max_length=4)
    previous_secret_encrypted = models.TextField(blank=True, default="")
    previous_expires_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["environment", "-created_at"], name="alertendpoint_env")]


class Delivery(EnvironmentOwned):
    """The outbox: one message to one channel target, written with its notification,
    drained ``FOR UPDATE SKIP LOCKED``. ``message_id`` is the ``webhook-id``, stable
    across retries (and a replay)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, null=True, blank=True, related_name="deliveries"
    )
    endpoint = models.ForeignKey(
        WebhookEndpoint,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="deliveries",
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    message_id = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="alertdelivery_due",
            ),
            models.Index(fields=["environment", "-created_at"], name="alertdelivery_env"),
        ]


class DeliveryAttempt(EnvironmentOwned):
    """The delivery log: one row per try."""

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="log")
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    response_snippet = models.CharField(max_length=500, blank=True, default="")
    error = models.CharField(max_length=500, blank=True, default="")
    succeeded = models.BooleanField(default=False)
