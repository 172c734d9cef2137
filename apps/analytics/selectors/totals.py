"""Totals of the ledger's rows over a window, and the window's hours and extra revenue."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import TYPE_CHECKING, Any

from apps.analytics.params import Window
from apps.analytics.revenue_sources import ExtraRevenue, extra_revenue
from apps.events import usage as ledger
from apps.events.usage import Grain, Measure, UsageFilter, hour_ceil

if TYPE_CHECKING:
    from apps.accounts.models import Environment


ZERO = Decimal(0)
PCT_QUANTUM = Decimal("0.01")
AMOUNT_QUANTUM = Decimal(1).scaleb(-12)
# Digits for Python arithmetic on sums (numeric(38, 12) columns, and their quotients).
EXACT_DIGITS = 80


# --- Measures --------------------------------------------------------------------------

# The sums every aggregate row carries, in the column order of the ledger rows read.
_MEASURES = (
    Measure.EVENT_COUNT,
    Measure.COST_USD,
    Measure.REVENUE_USD,
    Measure.UNPRICED_COUNT,
    Measure.USAGE_UNITS,
    Measure.ESTIMATED_COST_USD,
)


@dataclass(slots=True)
class Totals:
    events: int = 0
    cost: Decimal = ZERO
    revenue: Decimal = ZERO
    unpriced: int = 0
    usage_units: Decimal = ZERO
    # The part of ``cost`` that is estimated (usageUnits priced as input tokens).
    estimated_cost: Decimal = ZERO

    @classmethod
    def of_measures(cls, measures: ledger.Measures) -> Totals:
        return cls(
            events=measures.event_count,
            cost=measures.cost_usd,
            revenue=measures.revenue_usd,
            unpriced=measures.unpriced_count,
            usage_units=measures.usage_units,
            estimated_cost=measures.estimated_cost_usd,
        )

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Totals:
        return cls(
            events=row["events"] or 0,
            cost=row["cost"] if row["cost"] is not None else ZERO,
            revenue=row["revenue"] if row["revenue"] is not None else ZERO,
            unpriced=row["unpriced"] or 0,
            usage_units=row["usage_units"] if row["usage_units"] is not None else ZERO,
            estimated_cost=row.get("estimated_cost") or ZERO,
        )

    def add(self, other: Totals) -> None:
        with localcontext(prec=EXACT_DIGITS):
            self.events += other.events
            self.cost += other.cost
            self.revenue += other.revenue
            self.unpriced += other.unpriced
            self.usage_units += other.usage_units
            self.estimated_cost += other.estimated_cost

    @property
    def margin(self) -> Decimal:
        with localcontext(prec=EXACT_DIGITS):
            return self.revenue - self.cost

    @property
    def margin_pct(self) -> Decimal | None:
        """Percent of revenue kept, 2 dp (half-even); None when there is no revenue."""
        if not self.revenue:
            return None
        with localcontext(prec=EXACT_DIGITS):
            return (self.margin * 100 / self.revenue).quantize(
                PCT_QUANTUM, rounding=ROUND_HALF_EVEN
            )

    @property
    def avg_cost_per_priced_event(self) -> Decimal | None:
        """Cost / priced events, 12 dp (half-even); None when no event is priced."""
        priced = self.events - self.unpriced
        if priced <= 0:
            return None
        with localcontext(prec=EXACT_DIGITS):
            return (self.cost / priced).quantize(AMOUNT_QUANTUM, rounding=ROUND_HALF_EVEN)


def window_hours(window: Window) -> tuple[dt.datetime, dt.datetime]:
    """The hour buckets ``[start, end)`` read for ``window``: from the hour at or after
    its start to the one at or after its end (whole hours: rollups only)."""
    return hour_ceil(window.start), hour_ceil(window.end)


def _rows(
    environment: Environment,
    window: Window,
    group_by: Sequence[Grain],
    *,
    measures: Sequence[Measure] = _MEASURES,
    last_bucket: bool = False,
    filters: UsageFilter = ledger.NO_FILTER,
) -> tuple[str, list[Any]]:
    """SQL and parameters of the window's ledger rows (see :func:`ledger.rows_sql`)."""
    start, end = window_hours(window)
    return ledger.rows_sql(
        environment.pk,
        start=start,
        end=end,
        group_by=group_by,
        measures=measures,
        last_bucket=last_bucket,
        filters=filters,
    )


_MEASURE_SQL = """
    COALESCE(SUM(event_count), 0)::bigint AS events,
    COALESCE(SUM(cost_usd), 0) AS cost,
    COALESCE(SUM(revenue_usd), 0) AS revenue,
    COALESCE(SUM(unpriced_count), 0)::bigint AS unpriced,
    COALESCE(SUM(usage_units), 0) AS usage_units,
    COALESCE(SUM(estimated_cost_usd), 0) AS estimated_cost
"""


def _dicts(cursor: Any) -> list[dict[str, Any]]:
    columns = [col.name for col in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


_one_read: ContextVar[dict[tuple[Any, ...], ExtraRevenue] | None] = ContextVar(
    "analytics_one_read", default=None
)


@contextlib.contextmanager
def one_read() -> Iterator[None]:
    """Within it, each window's extra revenue is read once: a page that shows one window
    several times (totals, series, tops) reads its invoices once and sees the same ones
    everywhere. Also a decorator; the dashboard wraps every page in it."""
    token = _one_read.set({})
    try:
        yield
    finally:
        _one_read.reset(token)


def window_extra(environment: Environment, window: Window) -> ExtraRevenue:
    """Revenue beside the events' over the hours the rollups read for ``window`` (the
    hour buckets from the hour at or after its start to the one at or after its end).
    Read once per window inside :func:`one_read`; the result is shared: read it only."""
    hours = window_hours(window)
    memo = _one_read.get()
    if memo is None:
        return extra_revenue(environment, *hours)
    key = (environment.pk, *hours)
    if key not in memo:
        memo[key] = extra_revenue(environment, *hours)
    return memo[key]


def _add_days(by_day: dict[dt.date, Totals], extra: ExtraRevenue) -> None:
    with localcontext(prec=EXACT_DIGITS):
        for day, amount in extra.days.items():
            by_day.setdefault(day, Totals()).revenue += amount
