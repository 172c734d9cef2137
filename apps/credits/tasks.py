"""Periodic credit work (see CELERY_BEAT_SCHEDULE): expire lapsed grants, roll pools over
at period end. Both only find the pools with work due and settle each in its own
transaction; running them twice, or at once, changes nothing more (the pool lock
serializes, and a settled pool has nothing due)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from celery import shared_task
from django.db.models import F, Q
from django.utils import timezone

from .models import CreditGrant, CreditPool
from .services import credits_settle_pool

logger = logging.getLogger(__name__)

# Pools settled per run; the rest are picked up by the next run (and by any operation).
BATCH = 5_000


def _settle(pool_ids: Sequence[uuid.UUID]) -> dict[str, int]:
    entries = 0
    for pool_id in pool_ids:
        entries += credits_settle_pool(pool_id=pool_id).entries
    return {"pools": len(pool_ids), "entries": entries}


@shared_task
def expire_credit_grants() -> dict[str, int]:
    """Expire the remaining credits of every grant past its expiry."""
    now = timezone.now()
    pool_ids = list(
        CreditGrant.objects.filter(remaining__gt=0, expires_at__lte=now)
        .values_list("pool_id", flat=True)
        .distinct()[:BATCH]
    )
    result = _settle(pool_ids)
    if result["entries"]:
        logger.info("credits: expired grants in %s pools", result["pools"])
    return result


@shared_task
def roll_over_credit_pools() -> dict[str, int]:
    """Apply the rollover policy of every pool whose period has ended."""
    now = timezone.now()
    pool_ids = list(
        CreditPool.objects.filter(current_period_end__lte=now)
        .filter(
            Q(rolled_over_through__isnull=True) | Q(rolled_over_through__lt=F("current_period_end"))
        )
        .values_list("id", flat=True)[:BATCH]
    )
    return _settle(pool_ids)
