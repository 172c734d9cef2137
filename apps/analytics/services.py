"""Writes of the Observe settings."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from .models import MarginSettings

if TYPE_CHECKING:
    from apps.accounts.models import Environment


def margin_settings_update(
    *, environment: Environment, target_margin_pct: Decimal
) -> MarginSettings:
    """Set the environment's target margin (0-100 %, 2 places)."""
    if not Decimal(0) <= target_margin_pct <= Decimal(100):
        raise ValueError("the target margin is a percentage from 0 to 100")
    with transaction.atomic():
        settings, _created = MarginSettings.objects.update_or_create(
            environment_id=environment.pk,
            defaults={
                "target_margin_pct": target_margin_pct.quantize(Decimal("0.01")),
                "updated_at": timezone.now(),
            },
        )
    return settings
