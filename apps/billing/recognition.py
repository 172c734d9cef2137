"""Invoice revenue, recognised day by day in the ledger (docs/revenue.md).

When invoices are issued (``signals.invoices_issued``) or one is voided
(``signals.invoice_settled`` with status void), the invoices' rows of
``events_recognisedrevenue`` are written or removed in the same transaction:

* **What counts**: every line of a USD invoice that is not void, at its invoiced
  (rounded) amount ``amount_minor`` -- base fees, usage, overage, credits, proration,
  late usage, and credit notes' negative lines -- so a customer's recognised revenue
  adds up to what it was invoiced, to the cent. Other currencies are not counted
  (the margin views are in USD).
* **Service period, day by day**: a line's amount is spread over the UTC days of
  ``[service_start, service_end)`` in proportion to the time each day covers, rounded
  to 12 places with the remainder units of the 12th place going to the largest
  remainders (ties: the earlier day), so the days add up to the line exactly. A line
  of an instant (``service_start == service_end``) is all on that day.
* **No double counting**: a feature's lines of one service period are recognised
  *net* of the revenue the customer's events of that feature already carry in that
  period (``revenueAmount`` or plan-rule revenue at ingestion), less what earlier
  invoices of the same period already netted (their lines less their rows). The
  offset is spread over the period like the lines, in the invoice's own rows, so
  events plus rows give exactly the invoiced amount over the period, and a line the
  events carry in full leaves no row at all.
* **Lines of no feature** (base fee, proration, cancellation credit) are stored with
  no feature; the reads attribute them to features by cost share in the window read.

``revenue_rebuild`` (a management command) rewrites an environment's rows from its
invoices, in issue order.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterable
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Any

from django.db import transaction
from django.db.models import Sum

from apps.core.money import USD_EVENT, from_minor_units
from apps.core.tenancy import scoped
from apps.events import usage as ledger
from apps.events.models import RecognisedRevenue

from .models import Invoice, InvoiceLine

ZERO = Decimal(0)
DAY = dt.timedelta(days=1)
MICROSECOND = dt.timedelta(microseconds=1)
CURRENCY = "USD"
_PREC = 100
_SOURCE = RecognisedRevenue.Source.INVOICE


def split_by_day(amount: Decimal, start: dt.datetime, end: dt.datetime) -> dict[dt.date, Decimal]:
    """``amount`` over the UTC days of ``[start, end)`` by the time each covers, 12 places,
    adding up to ``amount`` exactly (largest remainders; ties: the earlier day)."""
    if amount < 0:  # a credit: the parts of its size, negated (same rounding rule)
        return {day: -part for day, part in split_by_day(-amount, start, end).items()}
    start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    if end <= start:
        return {start.date(): amount.quantize(USD_EVENT)}
    span = Decimal((end - start) // MICROSECOND)
    exact: dict[dt.date, Decimal] = {}
    with localcontext(prec=_PREC):
        day = dt.datetime.combine(start.date(), dt.time(), tzinfo=dt.UTC)
        while day < end:
            covered = min(end, day + DAY) - max(start, day)
            exact[day.date()] = amount * Decimal(covered // MICROSECOND) / span
            day += DAY
        total = amount.quantize(USD_EVENT)
        floors = {d: v.quantize(USD_EVENT, rounding=ROUND_FLOOR) for d, v in exact.items()}
        left = int((total - sum(floors.values(), ZERO)) / USD_EVENT)
        order = sorted(exact, key=lambda d: (-(exact[d] - floors[d]), d))
        for d in order[: max(left, 0)]:
            floors[d] += USD_EVENT
    return floors


def _rows_of(
    invoice: Invoice,
    lines: list[dict[str, Any]],
    event_revenue: dict[tuple, Decimal],
    netted: dict[tuple, Decimal],
) -> list[RecognisedRevenue]:
    per_day: dict[tuple[str, Any, dt.date], Decimal] = defaultdict(Decimal)
    groups: dict[tuple, Decimal] = defaultdict(Decimal)
    with localcontext(prec=_PREC):
        for line in lines:
            amount = from_minor_units(line["amount_minor"], CURRENCY)
            start, end = line["service_start"], line["service_end"]
            if line["feature_id"] is not None:
                groups[(line["feature_id"], start, end)] += amount
                continue
            for day, part in split_by_day(amount, start, end).items():
                per_day[(str(invoice.pk), None, day)] += part
        # A feature's lines of one period, net of the events' revenue, split once (a line
        # the events carry in full is zero on every day: no row).
        for key, billed in groups.items():
            feature_id, start, end = key
            net = billed - (event_revenue.get(key, ZERO) - netted.get(key, ZERO))
            if not net:
                continue
            for day, part in split_by_day(net, start, end).items():
                per_day[(str(invoice.pk), feature_id, day)] += part
    return [
        RecognisedRevenue(
            environment_id=invoice.environment_id,
            customer_id=invoice.customer_id,
            feature_id=feature_id,
            day=day,
            source=_SOURCE,
            origin=origin,
            amount=amount,
        )
        for (origin, feature_id, day), amount in per_day.items()
        if amount
    ]


def _earlier_netting(invoices: list[Invoice]) -> dict[tuple, Decimal]:
    """What other (earlier) invoices of these customers already netted per (customer,
    feature, service start, service end): their lines of that feature and period less
    their rows of the feature on the period's days. Two statements; empty when no other
    invoice bills the same feature and period (the usual case)."""
    if not invoices:
        return {}
    batch = [invoice.pk for invoice in invoices]
    customers = {invoice.customer_id for invoice in invoices}
    lines: dict[tuple, Decimal] = defaultdict(Decimal)
    for customer_id, feature_id, start, end, minor in (
        InvoiceLine.objects.filter(
            invoice__customer_id__in=customers,
            invoice__currency=CURRENCY,
            feature_id__isnull=False,
        )
        .exclude(invoice__status=Invoice.Status.VOID)
        .exclude(invoice_id__in=batch)
        .values_list("invoice__customer_id", "feature_id", "service_start", "service_end")
        .annotate(total=Sum("amount_minor"))
    ):
        lines[(customer_id, feature_id, start, end)] += from_minor_units(minor, CURRENCY)
    if not lines:
        return {}
    days: dict[tuple, dict[dt.date, Decimal]] = defaultdict(dict)
    for customer_id, feature_id, day, total in (
        scoped(RecognisedRevenue, invoices[0].environment_id)
        .filter(
            customer_id__in={key[0] for key in lines},
            feature_id__in={key[1] for key in lines},
            source=_SOURCE,
        )
        .exclude(origin__in=[str(pk) for pk in batch])
        .values_list("customer_id", "feature_id", "day")
        .annotate(total=Sum("amount"))
    ):
        days[(customer_id, feature_id)][day] = total
    out: dict[tuple, Decimal] = {}
    with localcontext(prec=_PREC):
        for (customer_id, feature_id, start, end), billed in lines.items():
            first = start.astimezone(dt.UTC).date()
            last = (end - MICROSECOND if end > start else start).astimezone(dt.UTC).date()
            rows = days.get((customer_id, feature_id), {})
            out[(customer_id, feature_id, start, end)] = billed - sum(
                (v for d, v in rows.items() if first <= d <= last), ZERO
            )
    return out


def revenue_recognise_invoices(*, invoice_ids: Iterable[uuid.UUID]) -> int:
    """(Re)write the recognised revenue of these invoices (none for void or non-USD
    ones); returns the number of rows written. Atomic."""
    ids = list(invoice_ids)
    if not ids:
        return 0
    with transaction.atomic():
        invoices = list(Invoice.objects.filter(pk__in=ids).order_by("issued_at", "sequence"))
        scoped(RecognisedRevenue, invoices[0].environment_id).filter(
            customer_id__in={i.customer_id for i in invoices},
            source=_SOURCE,
            origin__in=[str(i.pk) for i in invoices],
        ).delete()
        counted = [
            i for i in invoices if i.status != Invoice.Status.VOID and i.currency == CURRENCY
        ]
        lines: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
        for row in (
            InvoiceLine.objects.filter(invoice_id__in=[i.pk for i in counted])
            .order_by("invoice_id", "position")
            .values("invoice_id", "feature_id", "service_start", "service_end", "amount_minor")
        ):
            lines[row["invoice_id"]].append(dict(row))
        # The events' own revenue per (invoice, feature, service period): one statement.
        windows: list[ledger.CustomerWindow] = []
        # invoice -> {(feature, service_start, service_end): index of its window}
        keys: dict[uuid.UUID, dict[tuple, int]] = defaultdict(dict)
        for invoice in counted:
            for line in lines[invoice.pk]:
                key = (line["feature_id"], line["service_start"], line["service_end"])
                if key[0] is None or key[2] <= key[1] or key in keys[invoice.pk]:
                    continue
                keys[invoice.pk][key] = len(windows)
                windows.append(
                    ledger.CustomerWindow(len(windows), invoice.customer_id, key[1], key[2])
                )
        sums = (
            ledger.customer_window_sums(
                counted[0].environment_id,
                windows,
                group_by=(ledger.Grain.FEATURE,),
                measures=(ledger.Measure.REVENUE_USD,),
            )
            if windows
            else {}
        )
        earlier = _earlier_netting(counted)
        rows: list[RecognisedRevenue] = []
        for invoice in counted:
            event_revenue: dict[tuple, Decimal] = {}
            for key, index in keys[invoice.pk].items():
                amount = ZERO
                for group, measures in sums.get(index, {}).items():
                    if group.feature_id == key[0]:
                        amount += measures.get(ledger.Measure.REVENUE_USD, ZERO)
                event_revenue[key] = amount
            rows.extend(
                _rows_of(
                    invoice,
                    lines[invoice.pk],
                    event_revenue,
                    {
                        key: earlier[(invoice.customer_id, *key)]
                        for key in event_revenue
                        if (invoice.customer_id, *key) in earlier
                    },
                )
            )
        RecognisedRevenue.objects.bulk_create(rows, batch_size=5000)
    return len(rows)


def revenue_rebuild(*, environment_id: uuid.UUID) -> int:
    """Rewrite every invoice row of the environment from its invoices (issue order)."""
    with transaction.atomic():
        scoped(RecognisedRevenue, environment_id).filter(source=_SOURCE).delete()
        ids = list(
            scoped(Invoice, environment_id)
            .exclude(status=Invoice.Status.VOID)
            .order_by("issued_at", "sequence")
            .values_list("pk", flat=True)
        )
        written = 0
        # Invoice by invoice, so each nets only what earlier ones left.
        for invoice_id in ids:
            written += revenue_recognise_invoices(invoice_ids=[invoice_id])
    return written


def on_invoices_issued(sender: Any, *, invoice_ids: list[uuid.UUID], **kwargs: Any) -> None:
    revenue_recognise_invoices(invoice_ids=invoice_ids)


def on_invoice_settled(sender: Any, *, invoice: Invoice, **kwargs: Any) -> None:
    if invoice.status == Invoice.Status.VOID:
        revenue_recognise_invoices(invoice_ids=[invoice.pk])
