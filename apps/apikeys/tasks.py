"""Periodic upkeep for API requests."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .models import IdempotencyRecord


@shared_task
def purge_idempotency_records() -> int:
    cutoff = timezone.now() - settings.IDEMPOTENCY_TTL
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
