"""Pass-through mode's hooks (registered at import, from ``StripeSyncConfig.ready``):

* billing's ``invoices_issued``: invoices of connected pass-through environments with
  something to pay are pushed to Stripe by a task enqueued on commit;
* billing's ``invoice_settled``: an invoice paid or voided here closes its open Stripe
  invoice (a task, on commit), so the customer cannot pay it twice;
* Stripe's ``invoice.paid`` / ``invoice.payment_succeeded``: our invoice is marked paid
  through billing's service (the subscription leaves past due, as with mark-paid);
  ``invoice.payment_failed``: the failure is recorded, our status stays as it is;
  ``invoice.finalized`` / ``invoice.voided`` / ``invoice.marked_uncollectible``: Stripe's
  status is recorded.

The webhook handlers act only on Stripe invoices we pushed (``StripeInvoiceSync`` of the
event's environment); other invoices (Stripe-driven ones) are not their business. Locks:
our invoice first, then its sync row (the push takes them in the same order).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from apps.accounts.audit import Actor
from apps.billing.models import BillingSettings, Invoice, StripeMode
from apps.billing.services import invoice_mark_paid
from apps.billing.signals import invoice_settled, invoices_issued
from apps.core.errors import Conflict
from apps.core.tenancy import scoped, scoped_to_environments

from .models import StripeConnection, StripeInvoiceSync
from .services import stripe_sync_record
from .webhooks import WebhookContext, webhook_handler

logger = logging.getLogger(__name__)
SYSTEM = Actor.system()


# -- billing hooks -----------------------------------------------------------------------------


@receiver(invoices_issued, dispatch_uid="stripe_sync.push_issued")
def push_issued_invoices(sender: Any, invoice_ids: list[Any], **kwargs: Any) -> None:
    if not invoice_ids:
        return
    pass_through = BillingSettings.objects.filter(stripe_mode=StripeMode.PASS_THROUGH).values(
        "environment_id"
    )
    connected = scoped_to_environments(StripeConnection, pass_through).values("environment_id")
    ids = [
        str(pk)
        for pk in scoped_to_environments(Invoice, connected)
        .filter(pk__in=invoice_ids, status__in=Invoice.OPEN_STATUSES, total_minor__gt=0)
        .values_list("pk", flat=True)
    ]
    if ids:
        from .tasks import push_invoice

        transaction.on_commit(lambda: [push_invoice.delay(pk) for pk in ids], robust=True)


@receiver(invoice_settled, dispatch_uid="stripe_sync.close_settled")
def close_settled_invoice(sender: Any, invoice: Invoice, **kwargs: Any) -> None:
    open_in_stripe = (
        StripeInvoiceSync.objects.filter(invoice_id=invoice.pk)
        .exclude(stripe_invoice_id="")
        .exclude(state=StripeInvoiceSync.State.PAID)
        .exclude(stripe_status__in=["paid", "void", "deleted"])
        .exists()
    )
    if open_in_stripe:
        from .tasks import close_invoice

        invoice_id = str(invoice.pk)
        transaction.on_commit(lambda: close_invoice.delay(invoice_id), robust=True)


# -- Stripe webhooks ---------------------------------------------------------------------------


def _locked_sync(ctx: WebhookContext) -> StripeInvoiceSync | None:
    """The sync row of the event's Stripe invoice in its environment, with our invoice and
    the row locked (in that order); None when we did not push it."""
    obj = ctx.obj
    if obj.get("object") != "invoice" or not obj.get("id"):
        return None
    found = (
        scoped(StripeInvoiceSync, ctx.environment)
        .filter(stripe_invoice_id=obj["id"])
        .values_list("invoice_id", flat=True)
        .first()
    )
    if found is None:
        return None
    Invoice.objects.select_for_update().filter(pk=found).first()
    return StripeInvoiceSync.objects.select_for_update().select_related("invoice").get(pk=found)


def _timestamp(value: Any) -> dt.datetime | None:
    if isinstance(value, int) and value > 0:
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    return None


@webhook_handler("invoice.paid", "invoice.payment_succeeded")
def on_invoice_paid(ctx: WebhookContext) -> None:
    obj = ctx.obj
    if obj.get("status") != "paid" and obj.get("paid") is not True:
        return
    sync = _locked_sync(ctx)
    if sync is None:
        return
    now = timezone.now()
    sync.state = StripeInvoiceSync.State.PAID  # before mark-paid: no "close in Stripe" task
    sync.stripe_status = "paid"
    sync.updated_at = now
    sync.save(update_fields=["state", "stripe_status", "updated_at"])
    invoice = sync.invoice
    if invoice.status == Invoice.Status.PAID:
        return  # the other of the two events, or paid here first
    paid_at = _timestamp((obj.get("status_transitions") or {}).get("paid_at"))
    try:
        invoice_mark_paid(
            invoice=invoice,
            paid_at=min(paid_at, now) if paid_at else None,
            reference=f"stripe:{obj['id']}",
            now=now,
            actor=SYSTEM,
        )
    except Conflict as exc:
        # Paid in Stripe but void here (or Stripe now drives billing): an operator's call.
        message = f"Paid in Stripe ({obj['id']}), but here: {exc.message}"
        logger.warning("pass-through: %s", message)
        StripeInvoiceSync.objects.filter(pk=sync.pk).update(last_error=message)
        stripe_sync_record(environment_id=ctx.environment.pk, error=message)
        return
    stripe_sync_record(environment_id=ctx.environment.pk, counts={"invoicesPaid": 1})


@webhook_handler("invoice.payment_failed")
def on_invoice_payment_failed(ctx: WebhookContext) -> None:
    sync = _locked_sync(ctx)
    if sync is None:
        return
    obj = ctx.obj
    attempt = obj.get("attempt_count")
    next_attempt = _timestamp(obj.get("next_payment_attempt"))
    message = (
        f"Payment attempt {attempt} failed in Stripe" if attempt else "Payment failed in Stripe"
    )
    if next_attempt:
        message += f"; next attempt {next_attempt:%Y-%m-%d %H:%M} UTC"
    sync.payment_failures += 1
    sync.last_payment_error = message
    sync.last_payment_failed_at = timezone.now()
    if sync.state != StripeInvoiceSync.State.PAID:
        sync.stripe_status = str(obj.get("status") or sync.stripe_status)
    sync.updated_at = timezone.now()
    sync.save()
    stripe_sync_record(environment_id=ctx.environment.pk, counts={"paymentFailures": 1})


@webhook_handler("invoice.finalized", "invoice.voided", "invoice.marked_uncollectible")
def on_invoice_status(ctx: WebhookContext) -> None:
    sync = _locked_sync(ctx)
    if sync is None or sync.state == StripeInvoiceSync.State.PAID:
        return
    obj = ctx.obj
    sync.stripe_status = str(obj.get("status") or sync.stripe_status)
    if obj.get("hosted_invoice_url"):
        sync.hosted_invoice_url = obj["hosted_invoice_url"]
    if ctx.type == "invoice.voided" and sync.invoice.is_open:
        sync.last_error = "Voided in Stripe; still open here."
    sync.updated_at = timezone.now()
    sync.save()
