"""JSON shape of invoices (reference DTO names; amounts as decimal strings in major units,
plus the integer minor units they are stored as)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.urls import reverse

from apps.core.money import decimal_str, from_minor_units

from .models import Invoice, InvoiceLine

if TYPE_CHECKING:
    from .lines import LineDraft
    from .upcoming import Upcoming


def render_line(line: InvoiceLine, currency: str) -> dict[str, Any]:
    return {
        "id": line.pk,
        "kind": line.kind.upper(),
        "description": line.description,
        "chargeAmount": from_minor_units(line.amount_minor, currency),
        "amountMinor": line.amount_minor,
        # The exact amount before the line's one rounding.
        "exactAmount": decimal_str(line.amount_exact),
        "quantity": line.quantity,
        "featureKey": line.feature.key if line.feature is not None else None,
        "planId": line.plan_id,
        "periodStart": line.service_start,
        "periodEnd": line.service_end,
        "details": line.details,
    }


def render_invoice(invoice: Invoice) -> dict[str, Any]:
    currency = invoice.currency
    return {
        "id": invoice.pk,
        "number": invoice.number,
        "subscription": invoice.subscription_id,
        "customerReferenceId": invoice.customer.reference_id,
        "type": invoice.type.upper(),
        "reason": invoice.reason,
        "status": invoice.status.upper(),
        "amount": from_minor_units(invoice.total_minor, currency),
        "amountMinor": invoice.total_minor,
        "currency": currency,
        "invoicePeriodStart": invoice.period_start,
        "invoicePeriodEnd": invoice.period_end,
        "issuedAt": invoice.issued_at,
        "dueDate": invoice.due_at,
        "gracePeriodDays": invoice.grace_period_days,
        "paidAt": invoice.paid_at,
        "pastDueAt": invoice.past_due_at,
        "voidedAt": invoice.voided_at,
        "paymentReference": invoice.payment_reference or None,
        "creditedInvoiceId": invoice.credited_invoice_id,
        "planChangeId": invoice.plan_change_id,
        "htmlUrl": reverse("billing-invoice-page", args=[invoice.pk]),
        "metadata": invoice.metadata,
        "items": [render_line(line, currency) for line in invoice.lines.all()],
        "createdAt": invoice.created_at,
        "modifiedAt": invoice.updated_at,
    }


def render_draft_line(line: LineDraft, amount_minor: int, currency: str) -> dict[str, Any]:
    """A line of an upcoming invoice, in :func:`render_line`'s shape (no id yet)."""
    return {
        "kind": line.kind.upper(),
        "description": line.description,
        "chargeAmount": from_minor_units(amount_minor, currency),
        "amountMinor": amount_minor,
        "exactAmount": decimal_str(line.stored_exact),
        "quantity": line.quantity,
        "featureId": line.feature_id,
        "planId": line.plan_id,
        "periodStart": line.service_start,
        "periodEnd": line.service_end,
        "details": line.details,
    }


def render_upcoming(upcoming: Upcoming, customer_reference_id: str) -> dict[str, Any]:
    return {
        "customerReferenceId": customer_reference_id,
        "issuedAt": upcoming.at,
        "invoices": [
            {
                "subscription": invoice.draft.subscription.pk,
                "type": invoice.draft.type.upper(),
                "reason": invoice.draft.reason,
                "currency": invoice.draft.currency,
                "invoicePeriodStart": invoice.draft.period_start,
                "invoicePeriodEnd": invoice.draft.period_end,
                "amount": invoice.total,
                "amountMinor": invoice.total_minor,
                "items": [
                    render_draft_line(line, minor, invoice.draft.currency)
                    for line, minor in invoice.lines
                ],
            }
            for invoice in upcoming.invoices
        ],
    }
