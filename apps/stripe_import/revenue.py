"""Imported subscriptions as revenue: prorated to a window, attributed to features and models.

* **Periods.** A subscription bills ``amount`` per period of ``interval_count``
  intervals, anchored at the current period's start as Stripe reported it (months
  keep the anchor's day, clamped to the month's end, as Stripe does); the periods
  before and after it follow from the anchor.
* **Proration.** The revenue of ``[start, end)`` is, over every period ``P``,
  ``amount x |P ∩ [start, end) ∩ earning span| / |P|`` (durations in microseconds,
  exact in a 100-digit context): a month of a $30 plan earns $10 in the 10 days of a
  30-day month. The earning span runs from the start (or the end of the trial) to the
  end (or the scheduled cancellation).
* **Attribution.** Each piece (a period cut by the window) is spread over the
  ``(feature, model, provider)`` slices the customer used in that piece by the share
  rule of the billing attribution (:func:`apps.billing.attribution.attribution_shares`:
  share of known cost, else of units); with no usage in the piece it stays with the
  customer, unattributed.
* **Event revenue first.** In a piece where the customer's events carry revenue
  (``revenueAmount``), that revenue stands and the subscription adds nothing
  (reference §3.8: "revenue = event revenue, else the Stripe subscription").
* **USD only**: the margin views are in USD; subscriptions in other currencies are
  imported and listed, not counted.
* **Rounding**, once, to 12 places: each customer's sum half-even; its slices and
  the days by largest remainder, so the parts add up to the whole exactly.
* **Cost.** The shares read the hourly rollups of the subscribing customers over the
  window (one pass for units, cost and event revenue). A page asks for the same window
  several times (totals, tables, tops), so a result is kept in the process for
  :data:`CACHE_SECONDS`, keyed by the window and the subscriptions' rows (a new import
  is seen at once; new events move the shares within that delay).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterator
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import TYPE_CHECKING, Any

from apps.analytics.revenue_sources import ExtraRevenue
from apps.billing.attribution import attribution_shares
from apps.billing.usage import usage_sums
from apps.core.memo import LocalCache
from apps.core.money import USD_EVENT
from apps.core.months import add_months
from apps.core.tenancy import scoped

from .models import ImportedSubscription

if TYPE_CHECKING:
    from apps.accounts.models import Environment

ZERO = Decimal(0)
_EXACT = Context(prec=100)
MICROSECOND = dt.timedelta(microseconds=1)
DAY = dt.timedelta(days=1)
# Revenue is counted in USD only (the margin views' currency).
CURRENCY = "USD"
CACHE_SECONDS = 30
CACHE_SIZE = 256
_cache: LocalCache[tuple, ExtraRevenue] = LocalCache(
    "stripe_import.revenue", ttl=CACHE_SECONDS, max_entries=CACHE_SIZE
)


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    """What one subscription earns: ``amount`` per period, periods anchored at ``anchor``."""

    amount: Decimal  # major units per period
    interval: str  # day, week, month, year
    interval_count: int
    anchor: dt.datetime
    earns_from: dt.datetime
    earns_until: dt.datetime | None

    def period_start(self, number: int) -> dt.datetime:
        """Start of period ``number`` (0: the one starting at the anchor; may be negative)."""
        n = number * self.interval_count
        if self.interval == "month":
            return add_months(self.anchor, n)
        if self.interval == "year":
            return add_months(self.anchor, 12 * n)
        days = 7 * n if self.interval == "week" else n
        return self.anchor + dt.timedelta(days=days)

    def period_number_at(self, at: dt.datetime) -> int:
        """The number of the period containing ``at``."""
        nominal = {"day": 1, "week": 7, "month": 30.436875, "year": 365.2425}[self.interval]
        days = (at - self.anchor) / DAY
        number = int(days // (nominal * self.interval_count))
        while self.period_start(number) > at:
            number -= 1
        while self.period_start(number + 1) <= at:
            number += 1
        return number

    def pieces(
        self, start: dt.datetime, end: dt.datetime
    ) -> Iterator[tuple[dt.datetime, dt.datetime, Decimal]]:
        """``(lo, hi, amount)``: the revenue of each period's part within ``[start, end)``
        and the earning span (exact, unrounded)."""
        lo = max(start, self.earns_from)
        hi = end if self.earns_until is None else min(end, self.earns_until)
        if lo >= hi or self.amount <= 0:
            return
        number = self.period_number_at(lo)
        with localcontext(_EXACT):
            while True:
                p_start, p_end = self.period_start(number), self.period_start(number + 1)
                if p_start >= hi:
                    return
                a, b = max(lo, p_start), min(hi, p_end)
                if a < b:
                    yield (
                        a,
                        b,
                        self.amount
                        * Decimal((b - a) // MICROSECOND)
                        / Decimal((p_end - p_start) // MICROSECOND),
                    )
                number += 1


def schedule_of(row: dict[str, Any]) -> Schedule:
    return Schedule(
        amount=row["amount"],
        interval=row["interval"],
        interval_count=row["interval_count"],
        anchor=row["current_period_start"],
        earns_from=row["revenue_from"],
        earns_until=row["revenue_until"],
    )


def _quantize(value: Decimal) -> Decimal:
    return value.quantize(USD_EVENT, rounding=ROUND_HALF_EVEN)


def split_exactly(total: Decimal, parts: dict[Any, Decimal]) -> dict[Any, Decimal]:
    """``parts`` (exact) scaled to add up to ``total`` (12 places) and rounded to 12 places
    so that they add up to ``total`` exactly: each is rounded down, and the units of the
    12th place left over go to the largest remainders (ties: the key order)."""
    with localcontext(_EXACT):
        whole = sum(parts.values(), ZERO)
        if not whole:
            return dict.fromkeys(parts, ZERO)
        scaled = {key: value * total / whole for key, value in parts.items()}
        floors = {
            key: value.quantize(USD_EVENT, rounding=ROUND_FLOOR) for key, value in scaled.items()
        }
        left = int((total - sum(floors.values(), ZERO)) / USD_EVENT)
        order = sorted(scaled, key=lambda key: (-(scaled[key] - floors[key]), str(key)))
        for key in order[: max(left, 0)]:
            floors[key] += USD_EVENT
    return floors


def _earning(
    environment: Environment, start: dt.datetime, end: dt.datetime
) -> list[dict[str, Any]]:
    return [
        dict(row)
        for row in scoped(ImportedSubscription, environment.pk)
        .filter(currency=CURRENCY, revenue_from__isnull=False, revenue_from__lt=end)
        .exclude(revenue_until__lte=start)
        .values(
            "customer_id",
            "amount",
            "interval",
            "interval_count",
            "current_period_start",
            "revenue_from",
            "revenue_until",
            "updated_at",
        )
        .order_by("id")
    ]


def imported_revenue(
    environment: Environment, start: dt.datetime, end: dt.datetime
) -> ExtraRevenue:
    """The imported subscriptions' revenue in ``[start, end)`` (a revenue source of the
    analytics selectors): one query when nothing earns in the window, else two or three
    (the hours and the hours' edges), or one from the cache."""
    rows = _earning(environment, start, end)
    if not rows:
        return ExtraRevenue()
    key = (environment.pk, start, end, tuple(tuple(row.values()) for row in rows))
    cached = _cache.get(key)
    if cached is not None:
        return cached
    result = _attributed(environment, start, end, rows)
    _cache.set(key, result)
    return result


def _attributed(
    environment: Environment, start: dt.datetime, end: dt.datetime, rows: list[dict[str, Any]]
) -> ExtraRevenue:
    result = ExtraRevenue()
    # (customer, lo, hi) -> exact amount; the days of each piece alongside.
    pieces: dict[tuple[uuid.UUID, dt.datetime, dt.datetime], Decimal] = defaultdict(Decimal)
    with localcontext(_EXACT):
        for row in rows:
            for lo, hi, amount in schedule_of(row).pieces(start, end):
                pieces[(row["customer_id"], lo, hi)] += amount
    if not pieces:
        return result
    ranges = [(key, key[0], key[1], key[2]) for key in pieces]
    sums = usage_sums(
        environment.pk,
        ranges,
        measures=("revenue_usd", "cost_usd", "usage_units"),
        by_model=True,
    )
    event_revenue, costs, units = sums["revenue_usd"], sums["cost_usd"], sums["usage_units"]

    customers: dict[uuid.UUID, Decimal] = defaultdict(Decimal)
    slices: dict[uuid.UUID, dict[tuple[Any, str, str] | None, Decimal]] = defaultdict(
        lambda: defaultdict(Decimal)
    )
    days: dict[dt.date, Decimal] = defaultdict(Decimal)
    with localcontext(_EXACT):
        for key, amount in pieces.items():
            customer_id, lo, hi = key
            if sum(event_revenue.get(key, {}).values(), ZERO) > 0:
                continue  # the events' own revenue stands for this piece
            customers[customer_id] += amount
            shares = attribution_shares(units.get(key, {}), costs.get(key, {}))
            if not shares:
                slices[customer_id][None] += amount
            for slice_key, share in shares.items():
                slices[customer_id][slice_key] += amount * share
            # The piece's amount accrues evenly over its span: split it by UTC day.
            span = Decimal((hi - lo) // MICROSECOND)
            day = dt.datetime.combine(lo.astimezone(dt.UTC).date(), dt.time(), tzinfo=dt.UTC)
            while day < hi:
                a, b = max(lo, day), min(hi, day + DAY)
                days[day.date()] += amount * Decimal((b - a) // MICROSECOND) / span
                day += DAY

    for customer_id, exact in customers.items():
        amount = _quantize(exact)
        if not amount:
            continue
        result.customers[customer_id] = amount
        for slice_key, part in split_exactly(amount, slices[customer_id]).items():
            if slice_key is not None and part:
                feature_id, model, provider = slice_key
                result.slices[(customer_id, feature_id, model, provider)] = part
    total = sum(result.customers.values(), ZERO)
    result.days = {day: part for day, part in split_exactly(total, days).items() if part}
    return result
