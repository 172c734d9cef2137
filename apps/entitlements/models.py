"""Reservations: units (and credits) held for a customer's feature until an event settles them.

An entitlement check with ``reserve: true`` holds ``units`` against the
feature's usage cap and, when the feature is credit-backed, ``credits`` against
the customer's hard-limit pool, for ``ttl`` seconds. The event sent with the
reservation's id settles it (the real usage may differ). A hold counts while its
status is ``held`` and ``expires_at`` is in the future; an expired hold counts
for nothing even before the cleanup task marks it ``expired``.

Usage itself is never stored here: it is the ledger's (``apps.events``).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.core.money import EVENT_DECIMAL_PLACES, EVENT_MAX_DIGITS
from apps.core.tenancy import EnvironmentOwned

# Credits as apps.credits keeps them: 24 digits, 6 after the point.
CREDIT_MAX_DIGITS = 24
CREDIT_DECIMAL_PLACES = 6


class Reservation(EnvironmentOwned):
    class Status(models.TextChoices):
        HELD = "held", "Held"
        SETTLED = "settled", "Settled by an event"
        RELEASED = "released", "Released"
        EXPIRED = "expired", "Expired unsettled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="+")
    feature = models.ForeignKey("features.Feature", on_delete=models.CASCADE, related_name="+")
    # The subscription whose rule granted the hold (no foreign key: history outlives it).
    subscription_id = models.UUIDField(null=True, blank=True)
    units = models.DecimalField(max_digits=EVENT_MAX_DIGITS, decimal_places=EVENT_DECIMAL_PLACES)
    # Credits held in ``denomination`` ("" and NULL when the feature is not credit-backed).
    denomination = models.CharField(max_length=32, blank=True, default="")
    credits = models.DecimalField(
        max_digits=CREDIT_MAX_DIGITS, decimal_places=CREDIT_DECIMAL_PLACES, null=True, blank=True
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.HELD)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)
    # The event that settled it and the units it really used.
    event_id = models.BigIntegerField(null=True, blank=True)
    settled_units = models.DecimalField(
        max_digits=EVENT_MAX_DIGITS, decimal_places=EVENT_DECIMAL_PLACES, null=True, blank=True
    )
    # When the caller gave the hold back (``POST .../reservations/{id}/release``).
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(units__gte=0), name="reservation_units_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["held", "settled", "released", "expired"]),
                name="reservation_status_known",
            ),
        ]
        indexes = [
            # What a check and a reserve sum: the live holds of one customer's feature...
            models.Index(
                fields=["environment", "customer", "feature", "expires_at"],
                condition=Q(status="held"),
                name="reservation_held_feature_idx",
            ),
            # ... and of one customer's credit pool.
            models.Index(
                fields=["environment", "customer", "denomination", "expires_at"],
                condition=Q(status="held"),
                name="reservation_held_pool_idx",
            ),
            # The cleanup task's scan.
            models.Index(
                fields=["expires_at"], condition=Q(status="held"), name="reservation_expiry_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.units} of {self.feature_id} for {self.customer_id} ({self.status})"
