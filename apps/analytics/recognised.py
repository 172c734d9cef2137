"""The ledger's recognised revenue (invoices) as revenue of a window, attributed.

:func:`apps.events.usage.recognised_revenue` gives the window's recognised revenue
per customer, feature (or none) and day. Here it becomes an :class:`ExtraRevenue`
(docs/revenue.md, "Attribution"):

* a feature's revenue goes to that feature, spread over the models the customer used
  for it in the window by their share of its known cost (else of its units); with no
  usage of the feature in the window it stays on the feature, under no model;
* revenue of no feature (a base fee) goes to the ``(feature, model)`` slices the
  customer used in the window by their share of the customer's known cost (else of
  units); with no usage at all it stays unattributed: counted in the customer's
  revenue and the totals, on no feature;
* each customer's sum is rounded half-even to 12 places once; its slices and the
  window's days are split from it by largest remainder, so the parts add up exactly.

Queries: one on the recognised rows; when there are any, one ledger read of the
customers' usage per feature and model in the window (the rollups). A page reads the
same window several times (totals, tables, tops), so the attributed result is kept in
the process for :data:`CACHE_SECONDS`, keyed by the window and the recognised rows read
(new invoices are seen at once; new events move the shares within that delay, never
the customers' totals).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext
from typing import TYPE_CHECKING, Any

from apps.core.memo import LocalCache
from apps.core.money import USD_EVENT
from apps.events import usage as ledger
from apps.events.usage import Grain, UsageFilter

from .revenue_sources import ExtraRevenue

if TYPE_CHECKING:
    from apps.accounts.models import Environment

ZERO = Decimal(0)
_PREC = 100
Slice = tuple[uuid.UUID, str, str]  # feature, model, provider
# A page asks for the same window several times: the attribution is kept for 30 s, keyed
# by the window and the recognised rows it read (so customer totals are never stale).
_attributions: LocalCache[tuple[Any, ...], ExtraRevenue] = LocalCache(
    "analytics.recognised_revenue", ttl=30, max_entries=256
)


def shares(by_units: dict[Any, Decimal], by_cost: dict[Any, Decimal]) -> dict[Any, Decimal]:
    """Each key's share of the known cost, else of the units; empty without usage. The
    same rule as the billing attribution (``apps.billing.attribution``)."""
    with localcontext(prec=_PREC):
        total_cost = sum(by_cost.values(), ZERO)
        if total_cost > 0:
            return {k: c / total_cost for k, c in by_cost.items() if c > 0}
        total_units = sum(by_units.values(), ZERO)
        if total_units > 0:
            return {k: u / total_units for k, u in by_units.items() if u > 0}
    return {}


def split_exactly(total: Decimal, parts: dict[Any, Decimal]) -> dict[Any, Decimal]:
    """``parts`` scaled to ``total`` (12 places) and rounded so they add up to it exactly:
    each rounded down, the units of the 12th place left over to the largest remainders
    (ties: the key's text order)."""
    with localcontext(prec=_PREC):
        whole = sum(parts.values(), ZERO)
        if not whole:
            return dict.fromkeys(parts, ZERO)
        scaled = {key: value * total / whole for key, value in parts.items()}
        floors = {k: v.quantize(USD_EVENT, rounding=ROUND_FLOOR) for k, v in scaled.items()}
        left = int((total - sum(floors.values(), ZERO)) / USD_EVENT)
        order = sorted(scaled, key=lambda key: (-(scaled[key] - floors[key]), str(key)))
        for key in order[: max(left, 0)]:
            floors[key] += USD_EVENT
    return floors


def recognised_extra(
    environment: Environment, start: dt.datetime, end: dt.datetime
) -> ExtraRevenue:
    """The window's recognised revenue, attributed to customers, slices and days."""
    parts = ledger.recognised_revenue(environment.pk, start=start, end=end)
    if not parts:
        return ExtraRevenue()
    key = (environment.pk, start, end, tuple(parts))
    cached = _attributions.get(key)
    if cached is not None:
        return cached
    result = _attributed(environment, start, end, parts)
    _attributions.set(key, result)
    return result


def _attributed(
    environment: Environment,
    start: dt.datetime,
    end: dt.datetime,
    parts: list[ledger.RecognisedPart],
) -> ExtraRevenue:
    result = ExtraRevenue()
    customers: dict[uuid.UUID, Decimal] = defaultdict(Decimal)
    direct: dict[uuid.UUID, dict[uuid.UUID, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    shared: dict[uuid.UUID, Decimal] = defaultdict(Decimal)
    days: dict[dt.date, Decimal] = defaultdict(Decimal)
    with localcontext(prec=_PREC):
        for part in parts:
            customers[part.customer_id] += part.amount
            days[part.day] += part.amount
            if part.feature_id is None:
                shared[part.customer_id] += part.amount
            else:
                direct[part.customer_id][part.feature_id] += part.amount
    usage = ledger.usage(
        environment,
        start=start,
        end=end,
        group_by=(Grain.CUSTOMER, Grain.FEATURE, Grain.MODEL),
        filters=UsageFilter(customer_ids=sorted(customers)),
    )
    cost: dict[uuid.UUID, dict[Slice, Decimal]] = defaultdict(dict)
    units: dict[uuid.UUID, dict[Slice, Decimal]] = defaultdict(dict)
    for row in usage:
        key = row.key
        assert key.customer_id is not None and key.feature_id is not None
        piece = (key.feature_id, key.model or "", key.provider or "")
        cost[key.customer_id][piece] = row.measures.cost_usd
        units[key.customer_id][piece] = row.measures.usage_units
    for customer_id, exact in customers.items():
        amount = exact.quantize(USD_EVENT, rounding=ROUND_HALF_EVEN)
        if not amount:
            continue
        result.customers[customer_id] = amount
        slices: dict[Slice | None, Decimal] = defaultdict(Decimal)
        with localcontext(prec=_PREC):
            for feature_id, feature_amount in direct[customer_id].items():
                mine = {k: v for k, v in cost[customer_id].items() if k[0] == feature_id}
                my_units = {k: v for k, v in units[customer_id].items() if k[0] == feature_id}
                feature_shares = shares(my_units, mine) or {(feature_id, "", ""): Decimal(1)}
                for piece, share in feature_shares.items():
                    slices[piece] += feature_amount * share
            base = shared.get(customer_id, ZERO)
            if base:
                base_shares = shares(units[customer_id], cost[customer_id])
                if not base_shares:
                    slices[None] += base
                for piece, share in base_shares.items():
                    slices[piece] += base * share
        for piece, part_amount in split_exactly(amount, slices).items():
            if piece is not None and part_amount:
                feature_id, model, provider = piece
                result.slices[(customer_id, feature_id, model, provider)] = part_amount
    with localcontext(prec=_PREC):
        total = sum(result.customers.values(), ZERO)
    result.days = {day: part for day, part in split_exactly(total, days).items() if part}
    return result
