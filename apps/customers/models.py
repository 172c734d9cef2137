"""End customers of a tenant, keyed by the tenant's own ``customerReferenceId``."""

from __future__ import annotations

import uuid

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models.functions import Upper
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
        indexes = [
            # The API list: newest first per environment, keyset-paginated on (created_at, id).
            models.Index(
                fields=["environment", "created_at", "id"], name="customer_env_created_idx"
            ),
            # Search: Django's ``icontains`` compiles to ``UPPER(col::text) LIKE UPPER(%s)``;
            # these trigram indexes are on that same expression, so a search is an index scan
            # (BitmapOr across the columns), not a sequential scan of every customer.
            *(
                GinIndex(OpClass(Upper(column), name="gin_trgm_ops"), name=f"customer_{short}_trgm")
                for column, short in (
                    ("reference_id", "ref"),
                    ("email", "email"),
                    ("first_name", "first"),
                    ("last_name", "last"),
                )
            ),
        ]

    def __str__(self) -> str:
        return self.reference_id

    @property
    def display_name(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return name or self.email or self.reference_id
