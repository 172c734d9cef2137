"""Observe settings of one environment."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils import timezone

from apps.core.tenancy import EnvironmentOwned

DEFAULT_TARGET_MARGIN = Decimal(70)


class MarginSettings(EnvironmentOwned):
    """The environment's target margin (a missing row means the default, 70 %).

    Bands (docs/analytics.md): ``loss`` below 0, ``thin`` from 0 up to the target,
    ``healthy`` at or above it, ``unknown`` when cost is unknown or there is neither
    revenue nor cost.
    """

    target_margin_pct = models.DecimalField(
        max_digits=5, decimal_places=2, default=DEFAULT_TARGET_MARGIN
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment"], name="margin_settings_one_per_env"),
            models.CheckConstraint(
                condition=models.Q(target_margin_pct__gte=0, target_margin_pct__lte=100),
                name="margin_settings_target_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"target margin {self.target_margin_pct}% of {self.environment_id}"
