"""Periodic catalog refresh (daily, see CELERY_BEAT_SCHEDULE). Idempotent: same data, no writes."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from .services import catalog_sync


@shared_task
def sync_model_prices() -> dict[str, Any]:
    return catalog_sync().as_dict()
