"""Stripe's invoices of Stripe-driven subscriptions, mirrored into our invoices.

Webhook handlers (registered with ``apps.stripe_sync.webhooks.webhook_handler`` when
this module is imported, from ``AppConfig.ready``) for ``invoice.created``,
``invoice.finalized``, ``invoice.updated``, ``invoice.paid``,
``invoice.payment_succeeded``, ``invoice.payment_failed``, ``invoice.voided`` and
``invoice.marked_uncollectible``. Each runs inside the webhook's transaction, after
the event was recorded once (a duplicate delivery never reaches it), and ignores
events of environments in another mode and invoices of subscriptions we did not make.

The Stripe invoice becomes a ``billing.Invoice`` (our number, its lines, total and
status; ``metadata`` holds the Stripe ids and hosted URL), tied by
:class:`~apps.stripe_meters.models.StripeInvoice`. Statuses: draft -> pending,
open -> due, paid -> paid, void -> void, uncollectible -> past due, and a failed
payment -> past due, which makes the subscription past due (entitlement checks then
deny) until Stripe reports the invoice paid, as our own invoices do. A status never
moves back (deliveries come in any order); lines follow the newest event.

Concurrent deliveries of events of one invoice are serialised by a transaction-level
advisory lock on the Stripe invoice id; the creation of a subscription's mirrors by a
lock on its row (which one is a period invoice is decided one at a time). An event whose
invoice has more lines than it carries (``lines.has_more``) is mirrored with those, then
``refresh_invoice`` reads the whole invoice from Stripe and mirrors it again.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.utils import timezone

from apps.billing.lines import LineDraft
from apps.billing.models import Invoice, InvoiceLine
from apps.billing.services import invoice_create_mirrored, invoice_update_mirrored
from apps.core.money import from_minor_units
from apps.core.tenancy import scoped
from apps.stripe_sync.webhooks import WebhookContext, webhook_handler
from apps.subscriptions.models import Subscription

from .models import StripeInvoice, StripePlan, StripeRulePrice, StripeSubscription
from .services import is_stripe_driven

if TYPE_CHECKING:
    from apps.accounts.models import Environment

logger = logging.getLogger(__name__)

INVOICE_EVENTS = (
    "invoice.created",
    "invoice.finalized",
    "invoice.updated",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.voided",
    "invoice.marked_uncollectible",
)
_STATUS = {
    "draft": Invoice.Status.PENDING,
    "open": Invoice.Status.DUE,
    "paid": Invoice.Status.PAID,
    "void": Invoice.Status.VOID,
    "uncollectible": Invoice.Status.PAST_DUE,
}


def _at(value: Any) -> dt.datetime | None:
    if value in (None, ""):
        return None
    return dt.datetime.fromtimestamp(int(value), tz=dt.UTC)


def _id(value: Any) -> str:
    """A Stripe reference, expanded (an object) or not (its id)."""
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def subscription_id_of(invoice: dict[str, Any]) -> str:
    """The Stripe subscription an invoice belongs to (old and new API shapes)."""
    direct = _id(invoice.get("subscription"))
    if direct:
        return direct
    parent = invoice.get("parent") or {}
    return _id((parent.get("subscription_details") or {}).get("subscription"))


def _price_of(line: dict[str, Any]) -> str:
    price = _id(line.get("price"))
    if price:
        return price
    details = (line.get("pricing") or {}).get("price_details") or {}
    return _id(details.get("price")) or _id(line.get("plan"))


def _status_for(event_type: str, invoice: dict[str, Any]) -> str:
    status = _STATUS.get(str(invoice.get("status") or ""), Invoice.Status.PENDING)
    if event_type == "invoice.payment_failed" and status in (
        Invoice.Status.PENDING,
        Invoice.Status.DUE,
    ):
        return Invoice.Status.PAST_DUE
    if event_type == "invoice.marked_uncollectible" and status == Invoice.Status.DUE:
        return Invoice.Status.PAST_DUE
    return status


def _lines(
    environment_id: Any, subscription: Subscription, invoice: dict[str, Any]
) -> list[LineDraft]:
    currency = str(invoice.get("currency") or "usd").upper()
    base_prices = set(
        scoped(StripePlan, environment_id).values_list("stripe_base_price_id", flat=True)
    )
    rule_prices = {
        row.stripe_price_id: row
        for row in scoped(StripeRulePrice, environment_id)
        .exclude(stripe_price_id="")
        .select_related("feature")
    }
    created = _at(invoice.get("created")) or timezone.now()
    drafts: list[LineDraft] = []
    for line in (invoice.get("lines") or {}).get("data") or []:
        price = _price_of(line)
        period = line.get("period") or {}
        start = _at(period.get("start")) or created
        end = max(_at(period.get("end")) or start, start)
        amount_minor = int(line.get("amount") or 0)
        quantity = line.get("quantity_decimal") or line.get("quantity")
        rule = rule_prices.get(price)
        if line.get("proration"):
            kind = InvoiceLine.Kind.PRORATION
        elif rule is not None:
            kind = InvoiceLine.Kind.USAGE
        else:
            kind = InvoiceLine.Kind.BASE
        drafts.append(
            LineDraft(
                kind=kind,
                description=str(line.get("description") or "Stripe invoice line")[:255],
                service_start=start,
                service_end=end,
                amount_exact=from_minor_units(amount_minor, currency),
                feature_id=rule.feature_id if rule is not None else None,
                plan_id=subscription.plan_id if price in base_prices or rule else None,
                quantity=None if quantity is None else Decimal(str(quantity)),
                details={
                    "source": "stripe",
                    "stripeLineId": str(line.get("id") or ""),
                    "stripePriceId": price or None,
                },
            )
        )
    total = invoice.get("total")
    if total is not None:
        rest = int(total) - sum(
            int(line.get("amount") or 0) for line in (invoice.get("lines") or {}).get("data") or []
        )
        if rest:
            more = bool((invoice.get("lines") or {}).get("has_more"))
            drafts.append(
                LineDraft(
                    kind=InvoiceLine.Kind.BASE,
                    description=(
                        "Further lines of the Stripe invoice (being read from Stripe)"
                        if more
                        else "Tax, discounts and balance applied in Stripe"
                    ),
                    service_start=created,
                    service_end=created,
                    amount_exact=from_minor_units(rest, currency),
                    details={"source": "stripe"},
                )
            )
    return drafts


def _metadata(invoice: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": "stripe",
        "stripeInvoiceId": str(invoice.get("id") or ""),
        "stripeStatus": str(invoice.get("status") or ""),
        "stripeNumber": invoice.get("number"),
        "hostedInvoiceUrl": invoice.get("hosted_invoice_url"),
        "stripeSubscriptionId": subscription_id_of(invoice),
    }


def _type_of(subscription: Subscription, invoice: dict[str, Any], start: dt.datetime) -> str:
    """Our invoice type: a subscription's first Stripe invoice is its initial one, a cycle
    invoice a regular one (one per period: a second invoice for the same period, or any
    other reason, is an adjustment)."""
    reason = invoice.get("billing_reason")
    taken = Invoice.objects.filter(
        subscription_id=subscription.pk, type__in=Invoice.PERIOD_TYPES, period_start=start
    ).exists()
    if taken or reason not in (None, "subscription_create", "subscription_cycle"):
        return Invoice.Type.ADJUSTMENT
    first = not StripeInvoice.objects.filter(invoice__subscription_id=subscription.pk).exists()
    if reason == "subscription_create" or (reason is None and first):
        return Invoice.Type.IN_ADVANCE_INITIAL
    return Invoice.Type.REGULAR


def _our_subscription(
    environment: Environment, stripe_subscription_id: str, invoice: dict[str, Any]
) -> Subscription | None:
    """Our subscription behind a Stripe one: by the mapping row, or (an invoice can arrive
    before the row is written) by the ``tanso_subscription_id`` Stripe copies from the
    subscription's metadata into the invoice."""
    link = (
        scoped(StripeSubscription, environment.pk)
        .filter(stripe_subscription_id=stripe_subscription_id)
        .select_related("subscription")
        .first()
    )
    if link is not None:
        return link.subscription
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    ours = (details.get("metadata") or {}).get("tanso_subscription_id")
    try:
        subscription_id = uuid.UUID(str(ours))
    except ValueError:
        return None
    return scoped(Subscription, environment.pk).filter(pk=subscription_id).first()


def stripe_invoice_mirror(
    *, environment: Environment, event_type: str, invoice: dict[str, Any], event_created: Any
) -> Invoice | None:
    """Create or update the mirror of a Stripe invoice (inside the webhook's transaction).
    None when the invoice is not one of our Stripe-driven subscriptions'."""
    stripe_invoice_id = str(invoice.get("id") or "")
    stripe_subscription_id = subscription_id_of(invoice)
    if not stripe_invoice_id or not stripe_subscription_id:
        return None
    subscription = _our_subscription(environment, stripe_subscription_id, invoice)
    if subscription is None:
        return None
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            [f"stripe-invoice:{environment.pk}:{stripe_invoice_id}"],
        )
    now = timezone.now()
    at = _at(event_created) or now
    status = _status_for(event_type, invoice)
    mirror = (
        scoped(StripeInvoice, environment.pk).filter(stripe_invoice_id=stripe_invoice_id).first()
    )
    paid_at = _at((invoice.get("status_transitions") or {}).get("paid_at"))
    if mirror is None:
        # Two Stripe invoices of one subscription can be delivered at once (their
        # advisory locks differ, e.g. the first invoice and one made by hand for the
        # same period). The subscription row serialises their creation, so the second
        # decides its type after the first committed: an adjustment (one period invoice
        # per period), where deciding both at once broke that unique constraint.
        subscription = (
            scoped(Subscription.objects.select_for_update(of=("self",)), environment.pk)
            .filter(pk=subscription.pk)
            .get()
        )
        created = _at(invoice.get("created")) or now
        start = _at(invoice.get("period_start")) or created
        end = _at(invoice.get("period_end")) or start
        transitions = invoice.get("status_transitions") or {}
        issued = _at(transitions.get("finalized_at")) or created
        ours = invoice_create_mirrored(
            subscription=subscription,
            invoice_type=_type_of(subscription, invoice, start),
            reason=Invoice.Reason.PERIOD,
            currency=str(invoice.get("currency") or "usd"),
            period_start=start,
            period_end=end,
            lines=_lines(environment.pk, subscription, invoice),
            status=status,
            issued_at=issued,
            due_at=_at(invoice.get("due_date")) or issued,
            paid_at=paid_at,
            metadata=_metadata(invoice),
            now=now,
        )
        StripeInvoice.objects.create(
            environment_id=environment.pk,
            invoice=ours,
            stripe_invoice_id=stripe_invoice_id,
            stripe_status=str(invoice.get("status") or ""),
            stripe_number=str(invoice.get("number") or ""),
            hosted_invoice_url=str(invoice.get("hosted_invoice_url") or ""),
            last_event_at=at,
        )
        return ours
    newer = mirror.last_event_at is None or at >= mirror.last_event_at
    ours = invoice_update_mirrored(
        invoice=mirror.invoice,
        status=status,
        lines=_lines(environment.pk, subscription, invoice) if newer else None,
        paid_at=paid_at,
        metadata=_metadata(invoice) if newer else None,
        now=now,
    )
    if newer:
        mirror.stripe_status = str(invoice.get("status") or "")
        mirror.stripe_number = str(invoice.get("number") or mirror.stripe_number)
        mirror.hosted_invoice_url = str(
            invoice.get("hosted_invoice_url") or mirror.hosted_invoice_url
        )
        mirror.last_event_at = at
        mirror.updated_at = now
        mirror.save(
            update_fields=[
                "stripe_status",
                "stripe_number",
                "hosted_invoice_url",
                "last_event_at",
                "updated_at",
            ]
        )
    return ours


def stripe_invoice_refresh(*, environment: Environment, stripe_invoice_id: str) -> Invoice | None:
    """Read a Stripe invoice and all its lines from Stripe and mirror them (for an event
    whose invoice had more lines than it carried). Calls Stripe: a task, not a handler."""
    from apps.stripe_sync.client import stripe_client

    if not is_stripe_driven(environment.pk):
        return None
    client = stripe_client(environment)
    invoice = client.v1.invoices.retrieve(stripe_invoice_id).to_dict()
    lines = [
        line.to_dict()
        for line in client.v1.invoices.line_items.list(
            stripe_invoice_id, params={"limit": 100}
        ).auto_paging_iter()
    ]
    invoice["lines"] = {"object": "list", "data": lines, "has_more": False}
    with transaction.atomic():
        return stripe_invoice_mirror(
            environment=environment,
            event_type="invoice.updated",
            invoice=invoice,
            event_created=int(timezone.now().timestamp()),
        )


@webhook_handler(*INVOICE_EVENTS)
def on_invoice_event(ctx: WebhookContext) -> None:
    if not is_stripe_driven(ctx.environment.pk):
        return
    mirrored = stripe_invoice_mirror(
        environment=ctx.environment,
        event_type=ctx.type,
        invoice=ctx.obj,
        event_created=ctx.event.payload.get("created"),
    )
    if mirrored is not None and (ctx.obj.get("lines") or {}).get("has_more"):
        from .tasks import refresh_invoice

        env_id, stripe_id = str(ctx.environment.pk), str(ctx.obj.get("id"))
        transaction.on_commit(lambda: refresh_invoice.delay(env_id, stripe_id), robust=True)
