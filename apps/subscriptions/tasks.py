"""Celery tasks of subscriptions: idempotent, safe to run concurrently and to retry."""

from __future__ import annotations

import dataclasses

from celery import shared_task

from .services import subscription_advance_periods


@shared_task
def advance_subscription_periods() -> dict[str, int]:
    """Every few minutes: move subscriptions whose period ended into the current one
    (ending trials, applying scheduled cancellations and plan changes on the way)."""
    return dataclasses.asdict(subscription_advance_periods())
