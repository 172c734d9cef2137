"""Product features a tenant meters or gates, keyed by ``featureKey``."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from apps.core.tenancy import EnvironmentOwned


class Feature(EnvironmentOwned):
    class Source(models.TextChoices):
        MANUAL = "manual", "Created by API or dashboard"
        EVENT = "event", "Auto-created by an event"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key = models.CharField(max_length=128)
    name = models.CharField(max_length=150, blank=True, default="")
    description = models.TextField(blank=True, default="")
    # What one usage unit is, e.g. "tokens", "summaries", "api_calls".
    unit_label = models.CharField(max_length=40, blank=True, default="")
    is_enabled = models.BooleanField(default=True)
    metadata = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.MANUAL)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "key"], name="feature_env_key_unique")
        ]

    def __str__(self) -> str:
        return self.key
