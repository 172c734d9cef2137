"""End customers of a tenant, keyed by the tenant's own ``customerReferenceId``."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from apps.core.tenancy import EnvironmentOwned


class Customer(EnvironmentOwned):
    class Source(models.TextChoices):
        MANUAL = "manual", "Created by API or dashboard"
        EVENT = "event", "Auto-created by an event"
        STRIPE = "stripe", "Imported from Stripe"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    reference_id = models.CharField(max_length=255)
    email = models.EmailField(blank=True, default="")
    first_name = models.CharField(max_length=150, blank=True, default="")
    last_name = models.CharField(max_length=150, blank=True, default="")
    phone = models.CharField(max_length=40, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    stripe_customer_id = models.CharField(max_length=255, blank=True, default="")
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.MANUAL)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "reference_id"], name="customer_env_ref_unique"
            )
        ]

    def __str__(self) -> str:
        return self.reference_id

    @property
    def display_name(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return name or self.email or self.reference_id
