"""Invoices issued now, outside the cycle: one-off charges on a subscription."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from apps.accounts.audit import Actor, audit_change
from apps.accounts.models import AuditEntry
from apps.billing import errors
from apps.billing.lines import LineDraft
from apps.billing.models import Invoice, InvoiceLine, StripeMode
from apps.core.errors import Conflict, ValidationFailed
from apps.core.money import currency_exponent
from apps.subscriptions.models import Subscription

from .billing_settings import _env_billing
from .issuing import InvoiceDraft, _insert

MAX_CHARGES = 20


@dataclasses.dataclass(frozen=True)
class Charge:
    description: str
    amount: Decimal  # major units of the subscription's currency, > 0


def _validated(charges: Sequence[Charge], currency: str) -> None:
    if not 1 <= len(charges) <= MAX_CHARGES:
        raise ValidationFailed(fields={"items": [f"Give 1 to {MAX_CHARGES} charges."]})
    places = currency_exponent(currency)
    problems: dict[str, list[str]] = {}
    for index, charge in enumerate(charges):
        if not charge.description.strip():
            problems[f"items.{index}.description"] = ["Required."]
        if charge.amount <= 0:
            problems[f"items.{index}.amount"] = ["Must be greater than 0."]
        elif charge.amount != charge.amount.quantize(Decimal(1).scaleb(-places)):
            problems[f"items.{index}.amount"] = [f"At most {places} decimal places in {currency}."]
    if problems:
        raise ValidationFailed(fields=problems)


@transaction.atomic
def invoice_issue_charges(
    *,
    subscription: Subscription,
    charges: Sequence[Charge],
    actor: Actor,
    now: dt.datetime | None = None,
) -> Invoice:
    """Issue an invoice now for one-off charges (in the plan's currency) on a subscription
    in force: numbered, due and recognised like any invoice. Refused when Stripe drives
    billing (Stripe issues the invoices there) or the subscription has ended."""
    now = now or timezone.now()
    subscription = (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("environment", "customer", "plan")
        .get(pk=subscription.pk)
    )
    if subscription.status not in Subscription.LIVE_STATUSES:
        raise Conflict("The subscription has ended.", code=errors.SUBSCRIPTION_ENDED)
    env = _env_billing([subscription.environment_id])[subscription.environment_id]
    if env.stripe_mode == StripeMode.STRIPE_DRIVEN:
        raise Conflict(
            "Stripe drives billing in this environment: Stripe issues the invoices.",
            code=errors.STRIPE_DRIVEN,
        )
    currency = subscription.plan.currency
    _validated(charges, currency)
    lines = [
        LineDraft(
            kind=InvoiceLine.Kind.CHARGE,
            description=charge.description.strip(),
            service_start=now,
            service_end=now,
            amount_exact=charge.amount,
            quantity=Decimal(1),
        )
        for charge in charges
    ]
    draft = InvoiceDraft(
        subscription=subscription,
        type=Invoice.Type.ADJUSTMENT,
        reason=Invoice.Reason.ONE_OFF,
        currency=currency,
        period_start=now,
        period_end=now,
        lines=lines,
    )
    (invoice_id,) = _insert([draft], now=now)
    invoice = Invoice.objects.select_related("customer").get(pk=invoice_id)
    audit_change(
        environment_id=invoice.environment_id,
        action=AuditEntry.Action.INVOICE_ISSUED,
        target_type="invoice",
        target_id=invoice.pk,
        actor=actor,
        detail={
            "number": invoice.number,
            "reason": invoice.reason,
            "totalMinor": invoice.total_minor,
        },
    )
    return invoice
