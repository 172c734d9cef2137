"""Celery tasks of pass-through mode: take ids, idempotent, retried with backoff on
transient Stripe failures (network, rate limits, Stripe 5xx). Enqueued on commit by
``handlers.py``; the beat's :func:`push_pending_invoices` picks up anything a lost task
left behind."""

from __future__ import annotations

import dataclasses
from typing import Any

from celery import shared_task

from .passthrough import PushRetry, invoices_to_push, stripe_invoice_close, stripe_invoice_push

MAX_RETRIES = 10


def backoff(retries: int) -> int:
    """Seconds before retry ``retries + 1``: 5, 10, 20, ... capped at an hour."""
    return min(5 * 2**retries, 3600)


@shared_task(bind=True, max_retries=MAX_RETRIES, acks_late=True)
def push_invoice(self: Any, invoice_id: str) -> dict[str, Any]:
    """Push one invoice to Stripe (see ``passthrough.stripe_invoice_push``)."""
    try:
        result = stripe_invoice_push(invoice_id=invoice_id)
    except PushRetry as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from exc
    return dataclasses.asdict(result)


@shared_task(bind=True, max_retries=MAX_RETRIES, acks_late=True)
def close_invoice(self: Any, invoice_id: str) -> str:
    """Our invoice was settled here: close its open Stripe invoice."""
    try:
        return stripe_invoice_close(invoice_id=invoice_id)
    except PushRetry as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from exc


@shared_task
def push_pending_invoices() -> int:
    """The safety net (beat): enqueue a push for every open invoice of a connected
    pass-through environment that is not in Stripe yet."""
    ids = invoices_to_push()
    for invoice_id in ids:
        push_invoice.delay(str(invoice_id))
    return len(ids)
