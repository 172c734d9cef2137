"""Invoices Stripe issued (Stripe-driven mode), mirrored as ours: created with the
environment's next number, and moved only forward as Stripe's later state arrives."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.utils import timezone

from apps.billing.lines import LineDraft
from apps.billing.models import Invoice, InvoiceLine
from apps.core.money import to_minor_units
from apps.subscriptions.models import Subscription

from .billing_settings import _env_billing
from .issuing import _allocate_numbers
from .payments import _locked_invoice
from .statuses import _restore_if_settled, _set_past_due

# How far each status is along; a mirrored invoice only moves forward (paid and void end).
_MIRROR_ORDER: dict[str, int] = {
    Invoice.Status.PENDING: 0,
    Invoice.Status.DUE: 1,
    Invoice.Status.PAST_DUE: 2,
    Invoice.Status.PAID: 3,
    Invoice.Status.VOID: 3,
}


def _line_rows(invoice: Invoice, lines: Sequence[LineDraft]) -> list[InvoiceLine]:
    return [
        InvoiceLine(
            environment_id=invoice.environment_id,
            invoice=invoice,
            position=position,
            kind=line.kind,
            description=line.description[:255],
            feature_id=line.feature_id,
            plan_id=line.plan_id,
            service_start=line.service_start,
            service_end=line.service_end,
            quantity=line.quantity,
            amount_exact=line.stored_exact,
            amount_minor=to_minor_units(line.amount_exact, invoice.currency),
            units_total=line.units_total,
            units_beyond_cap=line.units_beyond_cap,
            units_uncovered=line.units_uncovered,
            details=line.details,
        )
        for position, line in enumerate(lines, start=1)
    ]


def _after_mirrored_status(invoice: Invoice, now: dt.datetime) -> None:
    if invoice.status == Invoice.Status.PAST_DUE:
        subscription = Subscription.objects.get(pk=invoice.subscription_id)
        if subscription.status == Subscription.Status.ACTIVE:
            _set_past_due(subscription, True, now)
    elif invoice.status in (Invoice.Status.PAID, Invoice.Status.VOID):
        _restore_if_settled(invoice.subscription_id, now)


def invoice_create_mirrored(
    *,
    subscription: Subscription,
    invoice_type: str,
    reason: str,
    currency: str,
    period_start: dt.datetime,
    period_end: dt.datetime,
    lines: Sequence[LineDraft],
    status: str,
    issued_at: dt.datetime,
    due_at: dt.datetime,
    paid_at: dt.datetime | None = None,
    metadata: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Invoice:
    """Record an invoice Stripe issued (Stripe-driven mode), inside the caller's transaction:
    the environment's next number, the lines (each rounded once, as ours: an amount given
    in exact minor units stays exact), the total their sum, the status given. A past-due
    invoice makes its subscription past due, as ours do."""
    now = now or timezone.now()
    env = _env_billing([subscription.environment_id])[subscription.environment_id]
    (sequence,) = _allocate_numbers(subscription.environment_id, 1)
    invoice = Invoice(
        environment_id=subscription.environment_id,
        number=f"{env.prefix}-{sequence:06d}",
        sequence=sequence,
        subscription=subscription,
        customer_id=subscription.customer_id,
        type=invoice_type,
        reason=reason,
        status=status,
        currency=currency.upper(),
        period_start=period_start,
        period_end=max(period_end, period_start),
        issued_at=issued_at,
        due_at=due_at,
        grace_period_days=subscription.grace_period_days,
        paid_at=(paid_at or now) if status == Invoice.Status.PAID else None,
        past_due_at=now if status == Invoice.Status.PAST_DUE else None,
        voided_at=now if status == Invoice.Status.VOID else None,
        metadata=metadata or {},
        created_at=now,
        updated_at=now,
    )
    rows = _line_rows(invoice, lines)
    invoice.total_minor = sum(row.amount_minor for row in rows)
    invoice.save(force_insert=True)
    InvoiceLine.objects.bulk_create(rows)
    _after_mirrored_status(invoice, now)
    return invoice


def invoice_update_mirrored(
    *,
    invoice: Invoice,
    status: str,
    lines: Sequence[LineDraft] | None = None,
    paid_at: dt.datetime | None = None,
    metadata: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Invoice:
    """Apply Stripe's later state to a mirrored invoice, inside the caller's transaction.

    The status only moves forward (pending -> due -> past due -> paid or void; paid and
    void are final), so a late or repeated delivery never undoes a payment. ``lines``
    replace the lines and total of an invoice that is not paid or void (Stripe edits
    drafts). Past due makes the subscription past due; paid or void restores it when
    no other invoice of it is past due."""
    now = now or timezone.now()
    invoice = _locked_invoice(invoice)
    final = invoice.status in (Invoice.Status.PAID, Invoice.Status.VOID)
    fields = ["updated_at"]
    if lines is not None and not final:
        InvoiceLine.objects.filter(invoice=invoice).delete()
        rows = _line_rows(invoice, lines)
        InvoiceLine.objects.bulk_create(rows)
        invoice.total_minor = sum(row.amount_minor for row in rows)
        fields.append("total_minor")
    if metadata is not None:
        invoice.metadata = {**invoice.metadata, **metadata}
        fields.append("metadata")
    moved = not final and _MIRROR_ORDER[status] > _MIRROR_ORDER[invoice.status]
    if moved:
        invoice.status = status
        fields.append("status")
        if status == Invoice.Status.PAID:
            invoice.paid_at = paid_at or now
            fields.append("paid_at")
        elif status == Invoice.Status.PAST_DUE:
            invoice.past_due_at = now
            fields.append("past_due_at")
        elif status == Invoice.Status.VOID:
            invoice.voided_at = now
            fields.append("voided_at")
    invoice.updated_at = now
    invoice.save(update_fields=fields)
    if moved:
        _after_mirrored_status(invoice, now)
    return invoice
