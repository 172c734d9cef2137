from __future__ import annotations

from celery import shared_task

from .services import reservations_expire


@shared_task(name="apps.entitlements.tasks.expire_reservations")
def expire_reservations() -> int:
    """Mark reservations past their expiry (bookkeeping; they stop counting by themselves)."""
    return reservations_expire()
