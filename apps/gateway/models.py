"""Provider credentials (encrypted at rest) and the database's budget reservations."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from apps.core.money import EVENT_DECIMAL_PLACES, EVENT_MAX_DIGITS
from apps.core.tenancy import EnvironmentOwned


class Provider(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"


class ProviderCredential(EnvironmentOwned):
    """The environment's key for one provider: what the gateway forwards with.

    ``secret_encrypted`` is a MultiFernet token (apps.gateway.crypto); the secret itself
    is never stored, rendered or logged, only its last four characters (``hint``).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.CharField(max_length=16, choices=Provider.choices)
    secret_encrypted = models.TextField()
    hint = models.CharField(max_length=4)
    # Empty: the provider's own API; else a compatible endpoint (Azure-style, a proxy,
    # the test suite's fake provider).
    base_url = models.URLField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "provider"], name="gateway_credential_env_provider"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} …{self.hint}"


class ModelRoute(EnvironmentOwned):
    """An alias model name that routes to an ordered list of the provider's models: the
    next is tried when one fails before its first byte (connect error, 408, 429, 5xx,
    529)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.CharField(max_length=16, choices=Provider.choices)
    alias = models.CharField(max_length=255)
    targets = ArrayField(models.CharField(max_length=255))
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "provider", "alias"], name="gateway_route_alias"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.alias} -> {', '.join(self.targets)}"


class BudgetReservation(models.Model):
    """A call's worst-case cost held against its key's budget while Redis is down.

    Deleted when the call settles; one left behind by a process that died is ignored
    once ``expires_at`` passes (the reaper deletes it).
    """

    id = models.UUIDField(primary_key=True, editable=False)
    api_key = models.ForeignKey("apikeys.ApiKey", on_delete=models.CASCADE, related_name="+")
    window_start = models.DateTimeField()
    amount_usd = models.DecimalField(
        max_digits=EVENT_MAX_DIGITS, decimal_places=EVENT_DECIMAL_PLACES, default=Decimal(0)
    )
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["api_key", "window_start"], name="gateway_resv_key")]

    def __str__(self) -> str:
        return f"{self.api_key_id}: ${self.amount_usd}"
