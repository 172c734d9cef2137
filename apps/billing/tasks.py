"""Celery tasks of billing (see CELERY_BEAT_SCHEDULE): idempotent, safe to run twice or
at once, and to retry. Each takes no arguments and works on every tenant."""

from __future__ import annotations

import dataclasses
from typing import Any

from celery import shared_task

from apps.subscriptions.services import subscription_advance_periods

from .services import billing_close_periods, billing_prorate_changes, billing_update_statuses


@shared_task
def run_billing_cycle() -> dict[str, Any]:
    """Every few minutes: apply what fell due on subscriptions (scheduled cancellations and
    downgrades, trial ends), invoice the period boundaries that passed, prorate immediate
    plan changes, then move invoice statuses on."""
    advanced = subscription_advance_periods()
    closed = billing_close_periods()
    prorated = billing_prorate_changes()
    statuses = billing_update_statuses()
    return {
        "advanced": dataclasses.asdict(advanced),
        "closed": dataclasses.asdict(closed),
        "prorated": prorated,
        "statuses": dataclasses.asdict(statuses),
    }


@shared_task
def update_invoice_statuses() -> dict[str, int]:
    """Pending -> due -> past due (and the subscriptions with it)."""
    return dataclasses.asdict(billing_update_statuses())
