"""Issuing invoices: gapless numbers and the ``COPY`` of drafted invoices with their lines.

Numbers: :func:`_allocate_numbers` increments the environment's counter row in the
inserting transaction (the row stays locked until commit), so numbers are gapless and in
order; counters are locked in a fixed order (by environment id)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from django.db import connection, transaction
from psycopg.types.json import Jsonb

from apps.billing import signals
from apps.billing.lines import LineDraft
from apps.billing.models import Invoice, StripeMode
from apps.core.money import to_minor_units
from apps.subscriptions.models import Subscription

from .billing_settings import EnvBilling, _env_billing

_NEXT_NUMBERS = """
INSERT INTO billing_invoicesequence (environment_id, last_number) VALUES (%s, %s)
ON CONFLICT (environment_id)
DO UPDATE SET last_number = billing_invoicesequence.last_number + EXCLUDED.last_number
RETURNING last_number
"""


def _allocate_numbers(environment_id: Any, count: int) -> range:
    """Reserve ``count`` consecutive invoice numbers of the environment.

    One statement increments the counter row; its row lock is held until the
    caller's transaction ends, so concurrent issuers queue, and a rollback
    returns the numbers: no gaps, no duplicates.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("invoice numbers are allocated inside the inserting transaction")
    with connection.cursor() as cur:
        cur.execute(_NEXT_NUMBERS, [environment_id, count])
        last = cur.fetchone()[0]
    return range(last - count + 1, last + 1)


@dataclasses.dataclass
class InvoiceDraft:
    subscription: Subscription
    type: str
    reason: str
    currency: str
    period_start: dt.datetime
    period_end: dt.datetime
    lines: list[LineDraft]
    plan_change_id: Any = None
    credited_invoice_id: Any = None


_INVOICE_COLUMNS = (
    "id, environment_id, number, sequence, subscription_id, customer_id, plan_change_id,"
    " credited_invoice_id, type, reason, status, currency, period_start, period_end,"
    " total_minor, issued_at, due_at, grace_period_days, paid_at, past_due_at, voided_at,"
    " payment_reference, metadata, created_at, updated_at"
)

_LINE_COLUMNS = (
    "environment_id, invoice_id, position, kind, description, feature_id, plan_id,"
    " service_start, service_end, quantity, amount_exact, amount_minor, units_total,"
    " units_beyond_cap, units_uncovered, details"
)


def _invoice_row(
    draft: InvoiceDraft,
    *,
    invoice_id: uuid.UUID,
    env_id: Any,
    env: EnvBilling,
    sequence: int,
    total: int,
    now: dt.datetime,
) -> tuple:
    """The ``billing_invoice`` row of a draft (columns as :data:`_INVOICE_COLUMNS`)."""
    subscription = draft.subscription
    due_at = now + dt.timedelta(days=env.payment_terms_days)
    paid = draft.type == Invoice.Type.CREDIT or total <= 0
    if paid:
        status = Invoice.Status.PAID
    else:
        status = Invoice.Status.DUE if due_at <= now else Invoice.Status.PENDING
    grace = env.grace_period_days
    return (
        invoice_id,
        env_id,
        f"{env.prefix}-{sequence:06d}",
        sequence,
        subscription.pk,
        subscription.customer_id,
        draft.plan_change_id,
        draft.credited_invoice_id,
        draft.type,
        draft.reason,
        status,
        draft.currency,
        draft.period_start,
        draft.period_end,
        total,
        now,
        due_at,
        grace if grace is not None else subscription.grace_period_days,
        now if paid else None,
        None,
        None,
        "nothing to pay" if paid and total == 0 else "",
        Jsonb({}),
        now,
        now,
    )


def _line_rows(
    draft: InvoiceDraft, minor: list[int], *, invoice_id: uuid.UUID, env_id: Any
) -> list[tuple]:
    """The ``billing_invoiceline`` rows of a draft (columns as :data:`_LINE_COLUMNS`)."""
    return [
        (
            env_id,
            invoice_id,
            position,
            line.kind,
            line.description,
            line.feature_id,
            line.plan_id,
            line.service_start,
            line.service_end,
            line.quantity,
            line.stored_exact,
            amount_minor,
            line.units_total,
            line.units_beyond_cap,
            line.units_uncovered,
            Jsonb(line.details),
        )
        for position, (line, amount_minor) in enumerate(
            zip(draft.lines, minor, strict=True), start=1
        )
    ]


def _copy(invoices: list[tuple], lines: list[tuple]) -> None:
    with connection.cursor() as cur:
        with cur.copy(f"COPY billing_invoice ({_INVOICE_COLUMNS}) FROM STDIN") as copy:
            for row in invoices:
                copy.write_row(row)
        with cur.copy(f"COPY billing_invoiceline ({_LINE_COLUMNS}) FROM STDIN") as copy:
            for row in lines:
                copy.write_row(row)


def _insert(drafts: Sequence[InvoiceDraft], *, now: dt.datetime) -> list[uuid.UUID]:
    """Number and store invoices with their lines (each line rounded once, here); returns
    their ids in the drafts' order.

    Status: a credit note, or an invoice with nothing to pay, is paid at once;
    otherwise due on issue plus the environment's payment terms (pending until
    then). Rows go in with ``COPY`` (a billing run writes tens of thousands).

    Drafts of environments where Stripe drives billing are not stored (Stripe issues
    their invoices; ``apps.stripe_meters`` mirrors them with
    :func:`invoice_create_mirrored`): the cycle still moves their cursors and grants
    their plan credits.
    """
    if not drafts:
        return []
    by_env: dict[Any, list[InvoiceDraft]] = defaultdict(list)
    for draft in drafts:
        by_env[draft.subscription.environment_id].append(draft)
    settings = _env_billing(by_env)
    ids: dict[int, uuid.UUID] = {}
    invoices: list[tuple] = []
    lines: list[tuple] = []
    for env_id in sorted(by_env, key=str):  # counters locked in a fixed order
        env_drafts = by_env[env_id]
        env = settings[env_id]
        if env.stripe_mode == StripeMode.STRIPE_DRIVEN:
            continue
        numbers = _allocate_numbers(env_id, len(env_drafts))
        for sequence, draft in zip(numbers, env_drafts, strict=True):
            minor = [to_minor_units(line.amount_exact, draft.currency) for line in draft.lines]
            invoice_id = uuid.uuid4()
            ids[id(draft)] = invoice_id
            invoices.append(
                _invoice_row(
                    draft,
                    invoice_id=invoice_id,
                    env_id=env_id,
                    env=env,
                    sequence=sequence,
                    total=sum(minor),
                    now=now,
                )
            )
            lines.extend(_line_rows(draft, minor, invoice_id=invoice_id, env_id=env_id))
    _copy(invoices, lines)
    issued = [ids[id(draft)] for draft in drafts if id(draft) in ids]
    signals.invoices_issued.send(sender=Invoice, invoice_ids=issued)
    return issued
