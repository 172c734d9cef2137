"""Proration of immediate plan changes of in-advance subscriptions: an adjustment invoice,
or a credit note when the new plan is cheaper, one per change."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from apps.billing.lines import plan_change_lines
from apps.billing.models import Invoice
from apps.core.money import to_minor_units
from apps.subscriptions.models import Subscription, SubscriptionChange

from .issuing import InvoiceDraft, _insert
from .timelines import IN_ADVANCE


def _unprorated_changes(now: dt.datetime) -> Any:
    invoiced = Invoice.objects.filter(plan_change_id=OuterRef("pk"))
    return (
        SubscriptionChange.objects.filter(
            status=SubscriptionChange.Status.COMPLETED,
            timing=SubscriptionChange.Timing.NOW,
            from_plan__billing_timing=IN_ADVANCE,
            effective_at__lte=now,
        )
        .filter(
            Q(subscription__trial_ends_at__isnull=True)
            | Q(effective_at__gte=F("subscription__trial_ends_at"))
        )
        .filter(~Exists(invoiced))
    )


def _proration_draft(change: SubscriptionChange, subscription: Subscription) -> InvoiceDraft:
    old, new = change.from_plan, change.to_plan
    period_start, lines = plan_change_lines(
        old,
        new,
        at=change.effective_at,
        period_start=change.period_start,
        period_end=change.period_end,
    )
    total = sum(to_minor_units(line.amount_exact, old.currency) for line in lines)
    return InvoiceDraft(
        subscription=subscription,
        type=Invoice.Type.CREDIT if total < 0 else Invoice.Type.ADJUSTMENT,
        reason=Invoice.Reason.PLAN_CHANGE,
        currency=old.currency,
        period_start=period_start,
        period_end=max(change.period_end, period_start),
        lines=lines,
        plan_change_id=change.pk,
    )


def billing_prorate_changes(*, now: dt.datetime | None = None, limit: int = 1000) -> int:
    """An adjustment invoice (or a credit note, when the new plan is cheaper) for each
    immediate plan change of an in-advance subscription: ``remaining / period length``
    of the new plan's price less the same share of the old one's. Idempotent (one per
    change: ``invoice_one_per_plan_change``). In arrears, the period's invoice prorates
    the base fee instead."""
    now = now or timezone.now()
    created = 0
    change_ids = list(
        _unprorated_changes(now).order_by("effective_at").values_list("pk", flat=True)[:limit]
    )
    for change_id in change_ids:
        with transaction.atomic():
            change = (
                SubscriptionChange.objects.select_related("from_plan", "to_plan")
                .filter(pk=change_id)
                .first()
            )
            if change is None:
                continue
            subscription = (
                Subscription.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(pk=change.subscription_id)
                .first()
            )
            if subscription is None:
                continue  # busy: the next run
            if Invoice.objects.filter(plan_change_id=change.pk).exists():
                continue
            _insert([_proration_draft(change, subscription)], now=now)
            created += 1
    return created
