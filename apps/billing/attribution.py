"""Revenue attribution: what each customer's invoices earned, per feature, beside what the
features cost, so margins count subscription revenue and not only event revenue.

* Lines of a feature (usage, overage, credits applied, late usage) belong to it.
* Lines of no feature (base fee, proration, cancellation credit) are spread over
  the features the customer used in the line's service period, in proportion to
  their known cost there (the costliest feature carries most of the fee); with no
  known cost, in proportion to units; with no usage at all, they stay
  unattributed (``feature`` None).
* Void invoices earn nothing. A line counts in the window that contains the start
  of its service period. Amounts are exact (the line's unrounded amount times a
  share), in the invoice's currency, rounded to 12 places once per result row.
* Cost is the features' known cost (USD, from the hourly rollups) in the window.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from decimal import Context, Decimal, localcontext
from typing import TYPE_CHECKING, Any

from apps.core.money import USD_EVENT
from apps.core.tenancy import scoped
from apps.customers.models import Customer
from apps.features.models import Feature

from .models import Invoice, InvoiceLine
from .usage import usage_totals

if TYPE_CHECKING:
    from apps.accounts.models import Environment

ZERO = Decimal(0)
_EXACT = Context(prec=100)
_SHARED_KINDS = (
    InvoiceLine.Kind.BASE,
    InvoiceLine.Kind.PRORATION,
    InvoiceLine.Kind.CANCELLATION,
)


@dataclasses.dataclass
class AttributedRevenue:
    customer_id: Any
    customer_reference_id: str
    feature_id: Any  # None: revenue no usage could carry
    feature_key: str | None
    currency: str
    usage_revenue: Decimal = ZERO  # lines of the feature
    base_revenue: Decimal = ZERO  # its share of base fees, prorations and credits
    cost_usd: Decimal = ZERO

    @property
    def revenue(self) -> Decimal:
        with localcontext(_EXACT):
            return self.usage_revenue + self.base_revenue

    @property
    def margin(self) -> Decimal | None:
        """Revenue less cost, when both are in USD."""
        if self.currency != "USD":
            return None
        with localcontext(_EXACT):
            return self.revenue - self.cost_usd


def _shares(by_units: dict[Any, Decimal], by_cost: dict[Any, Decimal]) -> dict[Any, Decimal]:
    with localcontext(_EXACT):
        total_cost = sum(by_cost.values(), ZERO)
        if total_cost > 0:
            return {f: c / total_cost for f, c in by_cost.items() if c > 0}
        total_units = sum(by_units.values(), ZERO)
        if total_units > 0:
            return {f: u / total_units for f, u in by_units.items() if u > 0}
    return {}


def attribution_shares(
    by_units: dict[Any, Decimal], by_cost: dict[Any, Decimal]
) -> dict[Any, Decimal]:
    """The share rule of revenue no feature carries: each key's share of the known cost,
    else of the units; empty when there was no usage. Exact (a 100-digit context); the
    keys are whatever the caller grouped by (features, or feature x model). Public for
    the Stripe import, which spreads imported subscription revenue the same way."""
    return _shares(by_units, by_cost)


def revenue_attribution(
    environment: Environment, *, start: dt.datetime, end: dt.datetime
) -> list[AttributedRevenue]:
    """Per customer, feature and currency: invoice revenue in ``[start, end)`` and cost.

    Queries: the lines, the usage and cost of the shared lines' periods (one
    statement each), the cost in the window, then customers and features.
    """
    lines = list(
        scoped(InvoiceLine, environment.pk)
        .filter(service_start__gte=start, service_start__lt=end)
        .exclude(invoice__status=Invoice.Status.VOID)
        .values_list(
            "invoice__customer_id",
            "invoice__currency",
            "kind",
            "feature_id",
            "service_start",
            "service_end",
            "amount_exact",
        )
    )
    windows = sorted(
        {
            (customer_id, s, e)
            for customer_id, _c, kind, feature_id, s, e, _a in lines
            if feature_id is None and kind in _SHARED_KINDS and e > s
        },
        key=str,
    )
    ranges = [(window, window[0], window[1], window[2]) for window in windows]
    units = usage_totals(environment.pk, ranges) if ranges else {}
    costs = usage_totals(environment.pk, ranges, measure="cost_usd") if ranges else {}

    rows: dict[tuple, AttributedRevenue] = {}

    def row(customer_id: Any, feature_id: Any, currency: str) -> AttributedRevenue:
        key = (customer_id, feature_id, currency)
        if key not in rows:
            rows[key] = AttributedRevenue(customer_id, "", feature_id, None, currency)
        return rows[key]

    with localcontext(_EXACT):
        for customer_id, currency, _kind, feature_id, s, e, amount in lines:
            if feature_id is not None:
                row(customer_id, feature_id, currency).usage_revenue += amount
                continue
            window = (customer_id, s, e)
            shares = _shares(units.get(window, {}), costs.get(window, {}))
            if not shares:
                row(customer_id, None, currency).base_revenue += amount
                continue
            for share_feature, share in shares.items():
                row(customer_id, share_feature, currency).base_revenue += amount * share

    customer_ids = {key[0] for key in rows}
    if customer_ids:
        window_cost = usage_totals(
            environment.pk,
            [(cid, cid, start, end) for cid in customer_ids],
            measure="cost_usd",
        )
        for (customer_id, feature_id, _currency), item in rows.items():
            if feature_id is not None:
                item.cost_usd = window_cost.get(customer_id, {}).get(feature_id, ZERO)
    references = dict(
        Customer.objects.filter(pk__in=customer_ids).values_list("pk", "reference_id")
    )
    features = dict(
        Feature.objects.filter(pk__in={key[1] for key in rows if key[1]}).values_list("pk", "key")
    )
    out = []
    with localcontext(_EXACT):
        for item in rows.values():
            item.customer_reference_id = references.get(item.customer_id, "")
            item.feature_key = features.get(item.feature_id) if item.feature_id else None
            item.usage_revenue = item.usage_revenue.quantize(USD_EVENT)
            item.base_revenue = item.base_revenue.quantize(USD_EVENT)
            out.append(item)
    out.sort(key=lambda r: (r.customer_reference_id, r.feature_key or "", r.currency))
    return out


def summarize(items: list[AttributedRevenue]) -> dict[str, dict[str, Decimal]]:
    """Totals per currency: revenue, of which usage and base."""
    totals: dict[str, dict[str, Decimal]] = defaultdict(
        lambda: {"revenue": ZERO, "usageRevenue": ZERO, "baseRevenue": ZERO}
    )
    with localcontext(_EXACT):
        for item in items:
            bucket = totals[item.currency]
            bucket["revenue"] += item.revenue
            bucket["usageRevenue"] += item.usage_revenue
            bucket["baseRevenue"] += item.base_revenue
    return dict(totals)
