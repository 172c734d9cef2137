"""Celery tasks of billing (see CELERY_BEAT_SCHEDULE): idempotent, safe to run twice or
at once, and to retry. Each works on every tenant; the beat passes no arguments."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from celery import shared_task

from apps.subscriptions.services import subscription_advance_periods

from .services import (
    billing_close_periods,
    billing_invoice_late_usage,
    billing_prorate_changes,
    billing_update_statuses,
)


@shared_task
def run_billing_cycle(now: str | None = None) -> dict[str, Any]:
    """Every few minutes: apply what fell due on subscriptions (scheduled cancellations and
    downgrades, trial ends), invoice the period boundaries that passed, prorate immediate
    plan changes, bill late usage of ended subscriptions (each looked at once a day), then
    move invoice statuses on.

    ``now`` (an ISO 8601 instant with its offset; the beat passes none: the current time)
    runs every step as of that instant, so tests drive the real task through a customer's
    life."""
    at = dt.datetime.fromisoformat(now) if now else None
    if at is not None and at.tzinfo is None:
        raise ValueError("now needs a UTC offset")
    advanced = subscription_advance_periods(now=at)
    closed = billing_close_periods(now=at)
    prorated = billing_prorate_changes(now=at)
    late = billing_invoice_late_usage(now=at)
    statuses = billing_update_statuses(now=at)
    return {
        "advanced": dataclasses.asdict(advanced),
        "closed": dataclasses.asdict(closed),
        "prorated": prorated,
        "late_usage": dataclasses.asdict(late),
        "statuses": dataclasses.asdict(statuses),
    }


@shared_task
def update_invoice_statuses() -> dict[str, int]:
    """Pending -> due -> past due (and the subscriptions with it)."""
    return dataclasses.asdict(billing_update_statuses())
