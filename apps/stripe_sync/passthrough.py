"""Pass-through mode: our invoices are pushed to Stripe for collection; Stripe's payment
comes back by webhook (``handlers.py``). Tanso stays the source of truth.

:func:`stripe_invoice_push` (run by the ``push_invoice`` task) takes one invoice to
Stripe in steps, each safe to repeat:

1. claim: a session advisory lock per invoice (a second worker gives up), then, under
   the invoice's row lock, check it is still open, has something to pay and the
   environment is in pass-through; the ``StripeInvoiceSync`` row is created once;
2. the Stripe customer, created once (``Customer.stripe_customer_id``);
3. a draft Stripe invoice (``send_invoice``, excluding pending items), its id saved at
   once, so a retry finds it instead of creating another;
4. one invoice item per line not already on it (Stripe's lines are read back first);
5. the Stripe total is compared with ours, our invoice re-read under its lock (paid or
   void meanwhile: the draft is deleted, nothing is sent), then the invoice finalized.

Every write carries an idempotency key derived from our object
(``tanso-inv-<id>-create``, ``-line-<position>``, ``-finalize``, ``tanso-cus-<id>-create``),
so even a retry that lost our own bookkeeping never creates twice.

:func:`stripe_invoice_close` follows an invoice settled here (mark-paid by API, void):
an open Stripe invoice is marked paid out of band or voided, so the customer cannot pay
twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import stripe
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from apps.billing.models import BillingSettings, Invoice, StripeMode
from apps.core.errors import Conflict
from apps.core.tenancy import scoped, scoped_to_environments
from apps.customers.models import Customer

from . import errors
from .client import stripe_client, write_options
from .models import StripeConnection, StripeInvoiceSync
from .services import stripe_sync_record

logger = logging.getLogger(__name__)

MAX_SWEEP_ATTEMPTS = 10
# Errors worth retrying later (network, rate limit, Stripe's own 5xx).
TRANSIENT = (stripe.APIConnectionError, stripe.RateLimitError)


class PushRetry(Exception):
    """A transient failure: the task retries with backoff."""


def is_transient(exc: stripe.StripeError) -> bool:
    return isinstance(exc, TRANSIENT) or (exc.http_status or 0) >= 500


@dataclasses.dataclass(frozen=True)
class PushResult:
    invoice_id: str
    outcome: str  # pushed | already | skipped | busy | not_pass_through | failed
    stripe_invoice_id: str = ""


# -- locking ---------------------------------------------------------------------------------


@contextmanager
def _push_lock(invoice_id: Any) -> Iterator[bool]:
    """A session-level advisory lock for the whole push (it spans several transactions
    and Stripe calls): True when this worker holds it."""
    key = f"stripe-invoice-push:{invoice_id}"
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [key])
        held = bool(cur.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])


def _mode(environment_id: Any) -> str:
    row = scoped(BillingSettings, environment_id).only("stripe_mode").first()
    return row.stripe_mode if row else StripeMode.NONE


def _payable(invoice: Invoice) -> bool:
    return invoice.is_open and invoice.total_minor > 0


# -- the push ------------------------------------------------------------------------------


def _claim(invoice_id: Any) -> tuple[Invoice, StripeInvoiceSync] | PushResult:
    with transaction.atomic():
        invoice = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("customer")
            .filter(pk=invoice_id)
            .first()
        )
        if invoice is None:
            return PushResult(str(invoice_id), "skipped")
        if _mode(invoice.environment_id) != StripeMode.PASS_THROUGH:
            return PushResult(str(invoice_id), "not_pass_through")
        sync, _ = StripeInvoiceSync.objects.get_or_create(
            invoice=invoice, defaults={"environment_id": invoice.environment_id}
        )
        if sync.state in (StripeInvoiceSync.State.PUSHED, StripeInvoiceSync.State.PAID):
            return PushResult(str(invoice_id), "already", sync.stripe_invoice_id)
        if not _payable(invoice) and not sync.stripe_invoice_id:
            sync.state = StripeInvoiceSync.State.SKIPPED
            sync.updated_at = timezone.now()
            sync.save(update_fields=["state", "updated_at"])
            return PushResult(str(invoice_id), "skipped")
        sync.push_attempts += 1
        sync.updated_at = timezone.now()
        sync.save(update_fields=["push_attempts", "updated_at"])
        return invoice, sync


def ensure_stripe_customer(client: stripe.StripeClient, customer: Customer) -> str:
    """The customer's Stripe id, creating the Stripe customer once."""
    customer.refresh_from_db(fields=["stripe_customer_id"])
    if customer.stripe_customer_id:
        return customer.stripe_customer_id
    name = f"{customer.first_name} {customer.last_name}".strip()
    params: dict[str, Any] = {
        "metadata": {
            "tanso_customer_id": str(customer.pk),
            "tanso_reference_id": customer.reference_id[:500],
        }
    }
    if customer.email:
        params["email"] = customer.email
    if name:
        params["name"] = name
    created = client.v1.customers.create(
        params=cast("Any", params), options=write_options("cus", customer.pk, "create")
    )
    # Set once: a concurrent push of another invoice stored the same id (same key).
    Customer.objects.filter(pk=customer.pk, stripe_customer_id="").update(
        stripe_customer_id=created.id, updated_at=timezone.now()
    )
    customer.refresh_from_db(fields=["stripe_customer_id"])
    return customer.stripe_customer_id


def _days_until_due(invoice: Invoice, now: dt.datetime) -> int:
    # Stripe counts whole days from finalization; ours is the source of truth anyway.
    return max(1, math.ceil((invoice.due_at - now).total_seconds() / 86400))


def _create_draft(
    client: stripe.StripeClient, invoice: Invoice, sync: StripeInvoiceSync, customer_id: str
) -> str:
    created = client.v1.invoices.create(
        params={
            "customer": customer_id,
            "currency": invoice.currency.lower(),
            "collection_method": "send_invoice",
            "days_until_due": _days_until_due(invoice, timezone.now()),
            "auto_advance": False,
            "pending_invoice_items_behavior": "exclude",
            "description": f"Invoice {invoice.number}",
            "metadata": {
                "tanso_invoice_id": str(invoice.pk),
                "tanso_invoice_number": invoice.number,
                "tanso_environment": str(invoice.environment_id),
            },
        },
        options=write_options("inv", invoice.pk, "create"),
    )
    StripeInvoiceSync.objects.filter(pk=sync.pk, stripe_invoice_id="").update(
        stripe_invoice_id=created.id, stripe_status=created.status or "", updated_at=timezone.now()
    )
    sync.refresh_from_db()
    return sync.stripe_invoice_id


def _lines_in_stripe(client: stripe.StripeClient, stripe_invoice_id: str) -> set[str]:
    positions: set[str] = set()
    for line in client.v1.invoices.line_items.list(
        stripe_invoice_id, params={"limit": 100}
    ).auto_paging_iter():
        metadata: Any = line.metadata or {}
        position = metadata.get("tanso_line")
        if position:
            positions.add(str(position))
    return positions


def _add_lines(
    client: stripe.StripeClient, invoice: Invoice, customer_id: str, stripe_invoice_id: str
) -> None:
    present = _lines_in_stripe(client, stripe_invoice_id)
    for line in invoice.lines.order_by("position"):
        if line.amount_minor == 0 or str(line.position) in present:
            continue
        client.v1.invoice_items.create(
            params={
                "customer": customer_id,
                "invoice": stripe_invoice_id,
                "amount": line.amount_minor,
                "currency": invoice.currency.lower(),
                "description": line.description[:500],
                "metadata": {"tanso_invoice_id": str(invoice.pk), "tanso_line": str(line.position)},
            },
            options=write_options("inv", invoice.pk, "line", line.position),
        )


def _fail(sync: StripeInvoiceSync, message: str) -> None:
    StripeInvoiceSync.objects.filter(pk=sync.pk).update(
        state=StripeInvoiceSync.State.FAILED, last_error=message[:2000], updated_at=timezone.now()
    )
    stripe_sync_record(environment_id=sync.environment_id, error=message)


def _discard_draft(client: stripe.StripeClient, sync: StripeInvoiceSync, reason: str) -> None:
    # Already gone, or no longer a draft (stripe_invoice_close then handles it).
    with contextlib.suppress(stripe.InvalidRequestError):
        client.v1.invoices.delete(sync.stripe_invoice_id)
    StripeInvoiceSync.objects.filter(pk=sync.pk).update(
        state=StripeInvoiceSync.State.SKIPPED,
        stripe_status="deleted",
        last_error=reason,
        updated_at=timezone.now(),
    )


def stripe_invoice_push(*, invoice_id: Any) -> PushResult:
    """Push one invoice of a pass-through environment to Stripe and finalize it there.
    Idempotent; raises :class:`PushRetry` on transient Stripe failures."""
    with _push_lock(invoice_id) as held:
        if not held:
            return PushResult(str(invoice_id), "busy")
        claimed = _claim(invoice_id)
        if isinstance(claimed, PushResult):
            return claimed
        invoice, sync = claimed
        try:
            return _push(invoice, sync)
        except stripe.StripeError as exc:
            message = f"{exc.__class__.__name__}: {exc.user_message or exc}"
            if is_transient(exc):
                StripeInvoiceSync.objects.filter(pk=sync.pk).update(
                    last_error=message[:2000], updated_at=timezone.now()
                )
                raise PushRetry(message) from exc
            logger.warning("pass-through push of %s failed: %s", invoice_id, message)
            _fail(sync, message)
            return PushResult(str(invoice_id), "failed", sync.stripe_invoice_id)


def _push(invoice: Invoice, sync: StripeInvoiceSync) -> PushResult:
    client = stripe_client(invoice.environment_id)
    customer_id = ensure_stripe_customer(client, invoice.customer)
    stripe_id = sync.stripe_invoice_id or _create_draft(client, invoice, sync, customer_id)
    remote = client.v1.invoices.retrieve(stripe_id)
    if remote.status == "draft":
        _add_lines(client, invoice, customer_id, stripe_id)
        remote = client.v1.invoices.retrieve(stripe_id)
        if remote.total != invoice.total_minor:
            _fail(sync, f"Stripe's total {remote.total} differs from ours {invoice.total_minor}")
            return PushResult(str(invoice.pk), "failed", stripe_id)
        # The last look before anything is payable: paid or void here meanwhile?
        with transaction.atomic():
            fresh = Invoice.objects.select_for_update().get(pk=invoice.pk)
            payable = _payable(fresh)
        if not payable:
            _discard_draft(client, sync, f"our invoice is {fresh.status}")
            return PushResult(str(invoice.pk), "skipped", stripe_id)
        remote = client.v1.invoices.finalize_invoice(
            stripe_id, options=write_options("inv", invoice.pk, "finalize")
        )
    now = timezone.now()
    state = (
        StripeInvoiceSync.State.PAID if remote.status == "paid" else StripeInvoiceSync.State.PUSHED
    )
    with transaction.atomic():
        row = StripeInvoiceSync.objects.select_for_update().get(pk=sync.pk)
        if row.state != StripeInvoiceSync.State.PAID:  # a payment webhook may be first
            row.state = state
        row.stripe_status = row.stripe_status if row.state == "paid" else (remote.status or "")
        row.hosted_invoice_url = remote.hosted_invoice_url or ""
        row.pushed_at = row.pushed_at or now
        row.last_error = ""
        row.updated_at = now
        row.save()
    stripe_sync_record(
        environment_id=invoice.environment_id, counts={"invoicesPushed": 1}, error=""
    )
    return PushResult(str(invoice.pk), "pushed", stripe_id)


# -- what to push ----------------------------------------------------------------------------


def invoices_to_push(*, environment_ids: Any = None, limit: int = 500) -> list[Any]:
    """Open invoices with something to pay, in connected pass-through environments, not
    yet pushed (none, or a failed or pending sync row)."""
    envs: QuerySet[BillingSettings] = BillingSettings.objects.filter(
        stripe_mode=StripeMode.PASS_THROUGH
    ).filter(Exists(scoped(StripeConnection, OuterRef("environment_id"))))
    if environment_ids is not None:
        envs = scoped_to_environments(envs, list(environment_ids))
    done = StripeInvoiceSync.objects.filter(invoice_id=OuterRef("pk")).filter(
        Q(
            state__in=[
                StripeInvoiceSync.State.PUSHED,
                StripeInvoiceSync.State.PAID,
                StripeInvoiceSync.State.SKIPPED,
            ]
        )
        # A push that keeps failing for a reason of its own stops being retried (its
        # error is on the settings page); a new push can be asked for by hand.
        | Q(push_attempts__gte=MAX_SWEEP_ATTEMPTS)
    )
    return list(
        scoped_to_environments(Invoice, envs.values("environment_id"))
        .filter(status__in=Invoice.OPEN_STATUSES, total_minor__gt=0)
        .filter(~Exists(done))
        .order_by("issued_at")
        .values_list("pk", flat=True)[:limit]
    )


# -- settled here: close the Stripe invoice ----------------------------------------------------


def stripe_invoice_close(*, invoice_id: Any) -> str:
    """Our invoice was paid (not through Stripe) or voided: an open Stripe invoice for it
    is marked paid out of band or voided; a draft is deleted. Returns what was done."""
    with _push_lock(invoice_id) as held:
        if not held:  # a push is under way: close after it (it may be finalizing)
            raise PushRetry("a push of this invoice is under way")
        return _close(invoice_id)


def _close(invoice_id: Any) -> str:
    sync = StripeInvoiceSync.objects.select_related("invoice").filter(invoice_id=invoice_id).first()
    if sync is None or not sync.stripe_invoice_id:
        return "nothing"
    invoice = sync.invoice
    if invoice.is_open:
        return "open"
    client = stripe_client(invoice.environment_id)
    try:
        remote = client.v1.invoices.retrieve(sync.stripe_invoice_id)
        if remote.status == "draft":
            _discard_draft(client, sync, f"our invoice is {invoice.status}")
            return "deleted"
        if remote.status != "open":
            return remote.status or "unknown"  # paid, void or uncollectible already
        if invoice.status == Invoice.Status.PAID:
            client.v1.invoices.pay(
                sync.stripe_invoice_id,
                params={"paid_out_of_band": True},
                options=write_options("inv", invoice.pk, "paid-out-of-band"),
            )
            done = "paid_out_of_band"
        else:
            client.v1.invoices.void_invoice(
                sync.stripe_invoice_id, options=write_options("inv", invoice.pk, "void")
            )
            done = "voided"
    except stripe.StripeError as exc:
        if is_transient(exc):
            raise PushRetry(str(exc)) from exc
        _fail(sync, f"closing the Stripe invoice: {exc.user_message or exc}")
        return "failed"
    StripeInvoiceSync.objects.filter(pk=sync.pk).update(
        stripe_status="paid" if done == "paid_out_of_band" else "void", updated_at=timezone.now()
    )
    return done


def stripe_invoice_push_request(*, environment: Any, invoice: Invoice) -> StripeInvoiceSync | None:
    """Ask for a push now (the API's "push again"): 409 unless the environment is connected
    and in pass-through and the invoice is open with something to pay; a failed push's
    attempts start over. The push itself runs in a task, enqueued on commit."""
    from .tasks import push_invoice

    if _mode(environment.pk) != StripeMode.PASS_THROUGH:
        raise Conflict(
            "This environment is not in pass-through mode.", code=errors.NOT_PASS_THROUGH
        )
    if not scoped(StripeConnection, environment.pk).exists():
        raise Conflict(
            "Stripe is not connected in this environment.", code=errors.STRIPE_NOT_CONNECTED
        )
    with transaction.atomic():
        fresh = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if not _payable(fresh):
            raise Conflict(
                f"The invoice is {fresh.status}, {fresh.total_minor} to pay: nothing to collect.",
                code=errors.INVOICE_NOT_PAYABLE,
            )
        StripeInvoiceSync.objects.filter(
            invoice_id=invoice.pk, state=StripeInvoiceSync.State.FAILED
        ).update(push_attempts=0, updated_at=timezone.now())
        invoice_id = str(invoice.pk)
        transaction.on_commit(lambda: push_invoice.delay(invoice_id), robust=True)
    return StripeInvoiceSync.objects.filter(invoice_id=invoice.pk).first()
