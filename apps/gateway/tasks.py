"""Periodic upkeep of the gateway's budgets."""

from __future__ import annotations

from celery import shared_task

from .budgets import reap_database


@shared_task
def reap_budget_reservations() -> int:
    """Release the PostgreSQL reservations of calls that died (Redis reaps its own in the
    reserve script); idempotent. How many were released."""
    return reap_database()
