"""Settling an invoice by hand: an out-of-band payment, or voiding it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.accounts.audit import Actor, audit_change
from apps.accounts.models import AuditEntry
from apps.billing import errors, signals
from apps.billing.models import Invoice, StripeMode
from apps.core.errors import Conflict, ValidationFailed
from apps.core.tenancy import scoped

from .billing_settings import _env_billing
from .statuses import _restore_if_settled


def _locked_invoice(invoice: Invoice) -> Invoice:
    return scoped(
        Invoice.objects.select_for_update(of=("self",)).select_related("subscription", "customer"),
        invoice.environment_id,
    ).get(pk=invoice.pk)


@transaction.atomic
def invoice_mark_paid(
    *,
    invoice: Invoice,
    paid_at: dt.datetime | None = None,
    reference: str = "",
    now: dt.datetime | None = None,
    actor: Actor,
) -> Invoice:
    """Record an out-of-band payment: pending, due or past due -> paid. Paying a paid
    invoice again changes nothing; a void one is 409. A past-due subscription with no
    past-due invoice left becomes active again. Refused when Stripe drives billing."""
    now = now or timezone.now()
    invoice = _locked_invoice(invoice)
    if invoice.status == Invoice.Status.PAID:
        return invoice
    if invoice.status == Invoice.Status.VOID:
        raise Conflict("The invoice is void.", code=errors.INVOICE_VOID)
    env = _env_billing([invoice.environment_id])[invoice.environment_id]
    if env.stripe_mode == StripeMode.STRIPE_DRIVEN:
        raise Conflict(
            "Stripe drives billing in this environment: payments come from Stripe.",
            code=errors.STRIPE_DRIVEN,
        )
    if paid_at is not None and paid_at > now + dt.timedelta(minutes=5):
        raise ValidationFailed(fields={"paidAt": ["May not be in the future."]})
    before = invoice.status
    invoice.status = Invoice.Status.PAID
    invoice.paid_at = paid_at or now
    invoice.payment_reference = reference
    invoice.updated_at = now
    invoice.save(update_fields=["status", "paid_at", "payment_reference", "updated_at"])
    _restore_if_settled(invoice.subscription_id, now)
    signals.invoice_settled.send(sender=Invoice, invoice=invoice)
    _audit_invoice(
        invoice,
        AuditEntry.Action.INVOICE_MARKED_PAID,
        actor,
        {"status": [before, invoice.status], "paidAt": invoice.paid_at, "reference": reference},
    )
    return invoice


def _audit_invoice(invoice: Invoice, action: str, actor: Actor, detail: dict[str, Any]) -> None:
    audit_change(
        environment_id=invoice.environment_id,
        action=action,
        target_type="invoice",
        target_id=invoice.pk,
        actor=actor,
        detail={"number": invoice.number, **detail},
    )


@transaction.atomic
def invoice_void(
    *, invoice: Invoice, reason: str = "", now: dt.datetime | None = None, actor: Actor
) -> Invoice:
    """Void an unpaid invoice (its number stays used). Idempotent; a paid one is 409."""
    now = now or timezone.now()
    invoice = _locked_invoice(invoice)
    if invoice.status == Invoice.Status.VOID:
        return invoice
    if invoice.status == Invoice.Status.PAID:
        raise Conflict("A paid invoice cannot be voided.", code=errors.INVOICE_PAID)
    before = invoice.status
    invoice.status = Invoice.Status.VOID
    invoice.voided_at = now
    if reason:
        invoice.metadata = {**invoice.metadata, "voidReason": reason}
    invoice.updated_at = now
    invoice.save(update_fields=["status", "voided_at", "metadata", "updated_at"])
    _restore_if_settled(invoice.subscription_id, now)
    signals.invoice_settled.send(sender=Invoice, invoice=invoice)
    _audit_invoice(
        invoice,
        AuditEntry.Action.INVOICE_VOIDED,
        actor,
        {"status": [before, invoice.status], "reason": reason},
    )
    return invoice
