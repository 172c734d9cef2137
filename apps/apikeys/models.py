"""API keys (stored as SHA-256 digests), their spend windows, and idempotency records."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from apps.core.money import EVENT_DECIMAL_PLACES, EVENT_MAX_DIGITS
from apps.core.tenancy import EnvironmentOwned

from . import scopes as S


class ApiKey(EnvironmentOwned):
    class Kind(models.TextChoices):
        SECRET = "sk", "Secret key"
        OBSERVE = "obs", "Scoped SDK key"
        CUSTOMER = "ck", "Customer key"

    class BudgetPeriod(models.TextChoices):
        DAY = "day", "Per day"
        MONTH = "month", "Per month"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=3, choices=Kind.choices)
    name = models.CharField(max_length=100, blank=True, default="")
    # Shown in lists to tell keys apart, e.g. "sk_test_67d9fb04"; not secret.
    prefix = models.CharField(max_length=24)
    # SHA-256 hex of the whole key: the only form in which the secret is kept.
    secret_hash = models.CharField(max_length=64, unique=True)
    # Last four characters, to recognise a key ("…445a").
    hint = models.CharField(max_length=4)
    scopes = ArrayField(models.CharField(max_length=32), default=list, blank=True)
    customer = models.ForeignKey(
        "customers.Customer",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="api_keys",
    )
    # Spend cap on metered LLM calls made with this key, in US cents; null = none.
    budget_cents = models.BigIntegerField(null=True, blank=True)
    # None = lifetime budget.
    budget_period = models.CharField(
        max_length=5, choices=BudgetPeriod.choices, null=True, blank=True
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        "accounts.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    rotated_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="rotations"
    )

    class Meta:
        indexes = [models.Index(fields=["environment", "-created_at"], name="apikey_env_created")]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(kind="ck") & models.Q(customer__isnull=False))
                | (~models.Q(kind="ck") & models.Q(customer__isnull=True)),
                name="apikey_customer_iff_ck",
            ),
            models.CheckConstraint(
                condition=models.Q(budget_cents__isnull=True) | models.Q(budget_cents__gte=0),
                name="apikey_budget_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}…{self.hint}"

    @property
    def budget_usd(self) -> Decimal | None:
        return None if self.budget_cents is None else Decimal(self.budget_cents) / 100

    @property
    def effective_scopes(self) -> frozenset[str]:
        if self.kind == self.Kind.SECRET:
            return frozenset(S.ALL_SCOPES)
        return frozenset(self.scopes)

    def has_scope(self, scope: str) -> bool:
        return scope in self.effective_scopes

    def status_at(self, now: dt.datetime) -> str:
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    @property
    def status(self) -> str:
        return self.status_at(timezone.now())


class ApiKeySpend(models.Model):
    """Metered spend of one key in one budget window (written by the gateway)."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="spend_windows")
    # Start of the window: midnight UTC (day), the 1st (month), or the epoch (lifetime).
    window_start = models.DateTimeField()
    spent_usd = models.DecimalField(
        max_digits=EVENT_MAX_DIGITS, decimal_places=EVENT_DECIMAL_PLACES, default=Decimal(0)
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["api_key", "window_start"], name="apikeyspend_window_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.api_key_id} from {self.window_start:%Y-%m-%d}: ${self.spent_usd}"


class IdempotencyRecord(EnvironmentOwned):
    """The first answer to a mutating call made with an ``Idempotency-Key`` header."""

    id = models.BigAutoField(primary_key=True)
    # The key that made the request: its answer is replayed to that key only (another
    # key's identical request runs, and is authorized, on its own).
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    # Null while the first request is still being processed.
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    content_type = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "api_key", "key"], name="idempotency_env_apikey_key_unique"
            )
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]
