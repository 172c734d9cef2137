"""Invoice statuses over time (pending -> due -> past due) and the past-due state of their
subscriptions."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from apps.accounts.audit import Actor
from apps.billing.models import Invoice
from apps.core.errors import Conflict
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_set_past_due

SYSTEM = Actor.system()

_PAST_DUE = """
UPDATE billing_invoice SET status = 'past_due', past_due_at = %s, updated_at = %s
WHERE status = 'due' AND due_at + make_interval(days => grace_period_days) <= %s
  AND NOT metadata @> '{"source": "stripe"}'
"""


# Invoices Stripe issued (Stripe-driven mode): Stripe's own collection moves their status.
MIRRORED = Q(metadata__contains={"source": "stripe"})


@dataclasses.dataclass
class StatusResult:
    due: int = 0
    past_due: int = 0
    subscriptions_past_due: int = 0
    subscriptions_restored: int = 0


def billing_update_statuses(*, now: dt.datetime | None = None) -> StatusResult:
    """Pending -> due at the due date; due -> past due once the grace period is over; the
    subscription of a past-due invoice becomes past due (entitlement checks then deny),
    and one with no past-due invoice left becomes active again. Idempotent. Invoices
    mirrored from Stripe keep the status Stripe gives them (its collection decides)."""
    now = now or timezone.now()
    result = StatusResult()
    with transaction.atomic():
        result.due = (
            Invoice.objects.filter(status=Invoice.Status.PENDING, due_at__lte=now)
            .exclude(MIRRORED)
            .update(status=Invoice.Status.DUE, updated_at=now)
        )
        with connection.cursor() as cur:
            cur.execute(_PAST_DUE, [now, now, now])
            result.past_due = cur.rowcount
    overdue = Invoice.objects.filter(subscription_id=OuterRef("pk"), status=Invoice.Status.PAST_DUE)
    for subscription in Subscription.objects.filter(status=Subscription.Status.ACTIVE).filter(
        Exists(overdue)
    ):
        if _set_past_due(subscription, True, now):
            result.subscriptions_past_due += 1
    for subscription in Subscription.objects.filter(status=Subscription.Status.PAST_DUE).filter(
        ~Exists(overdue)
    ):
        if _set_past_due(subscription, False, now):
            result.subscriptions_restored += 1
    return result


def _set_past_due(subscription: Subscription, past_due: bool, now: dt.datetime) -> bool:
    try:
        with transaction.atomic():
            subscription_set_past_due(
                subscription=subscription, past_due=past_due, now=now, actor=SYSTEM
            )
    except Conflict:
        return False  # cancelled or trialing meanwhile
    return True


def _restore_if_settled(subscription_id: Any, now: dt.datetime) -> None:
    subscription = Subscription.objects.filter(pk=subscription_id).first()
    if subscription is None or subscription.status != Subscription.Status.PAST_DUE:
        return
    if Invoice.objects.filter(
        subscription_id=subscription_id, status=Invoice.Status.PAST_DUE
    ).exists():
        return
    _set_past_due(subscription, False, now)
