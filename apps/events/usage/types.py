"""The vocabulary of the ledger's read API: grains, filters, keys and measures."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal, localcontext
from typing import Any

ZERO = Decimal(0)
# Digits for Python arithmetic on sums: numeric(38, 12) columns (and sums of them)
# stay exact; the default 28 digits could round silently.
EXACT_DIGITS = 80


class Grain(enum.StrEnum):
    """One dimension a read groups by; combine them: ``group_by=(Grain.CUSTOMER, Grain.DAY)``.

    Each grain fills the :class:`UsageKey` fields named in :attr:`key_fields`. A new
    dimension is one member here plus its column expressions in ``sql.py``.
    """

    CUSTOMER = "customer"
    FEATURE = "feature"
    MODEL = "model"  # (model, provider); "" model: events that named no model
    DAY = "day"  # UTC day (midnight, aware)
    HOUR = "hour"  # UTC hour (aware)
    # The API key that wrote the events; ``models.NO_API_KEY`` (the nil UUID) for events
    # no key wrote. Served by the hourly rollup and the events (no daily rollup has it).
    API_KEY = "api_key"

    @property
    def key_fields(self) -> tuple[str, ...]:
        return _KEY_FIELDS[self]


_KEY_FIELDS: dict[Grain, tuple[str, ...]] = {
    Grain.CUSTOMER: ("customer_id",),
    Grain.FEATURE: ("feature_id",),
    Grain.MODEL: ("model", "provider"),
    Grain.DAY: ("day",),
    Grain.HOUR: ("hour",),
    Grain.API_KEY: ("api_key_id",),
}


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Which events count; ``None`` means no restriction on that dimension.

    Several values of one dimension are alternatives (``IN``); dimensions combine
    with AND. An empty collection matches nothing.
    """

    customer_ids: Collection[uuid.UUID] | None = None
    feature_ids: Collection[uuid.UUID] | None = None
    models: Collection[str] | None = None
    providers: Collection[str] | None = None
    api_key_ids: Collection[uuid.UUID] | None = None  # NO_API_KEY: events no key wrote

    @property
    def empty(self) -> bool:
        """True when a dimension is restricted to no value at all (nothing can match)."""
        return any(
            values is not None and len(values) == 0
            for values in (
                self.customer_ids,
                self.feature_ids,
                self.models,
                self.providers,
                self.api_key_ids,
            )
        )


NO_FILTER = UsageFilter()


@dataclass(frozen=True, slots=True)
class UsageKey:
    """The group a row sums; fields of grains not grouped by are ``None``."""

    customer_id: uuid.UUID | None = None
    feature_id: uuid.UUID | None = None
    model: str | None = None
    provider: str | None = None
    day: dt.datetime | None = None
    hour: dt.datetime | None = None
    api_key_id: uuid.UUID | None = None


class Measure(enum.StrEnum):
    """A sum the ledger keeps (the rollups' columns; the same names on :class:`Measures`)."""

    EVENT_COUNT = "event_count"
    USAGE_UNITS = "usage_units"
    INPUT_TOKENS = "input_tokens"
    OUTPUT_TOKENS = "output_tokens"
    CACHE_READ_TOKENS = "cache_read_tokens"
    CACHE_WRITE_TOKENS = "cache_write_tokens"
    REASONING_TOKENS = "reasoning_tokens"
    COST_USD = "cost_usd"
    REVENUE_USD = "revenue_usd"
    UNPRICED_COUNT = "unpriced_count"
    ESTIMATED_COST_USD = "estimated_cost_usd"
    REVENUE_COUNT = "revenue_count"
    DURATION_MS_SUM = "duration_ms_sum"
    DURATION_COUNT = "duration_count"


# Measures that are Decimal amounts (the others are integer counts).
AMOUNTS = frozenset(
    {Measure.USAGE_UNITS, Measure.COST_USD, Measure.ESTIMATED_COST_USD, Measure.REVENUE_USD}
)


@dataclass(frozen=True, slots=True)
class Measures:
    """The sums of a set of events. Amounts are USD (``cost_usd``, ``revenue_usd``) or
    units (``usage_units``), exact ``Decimal``; the rest are integer counts.

    ``cost_usd`` sums the priced events only: ``unpriced_count`` says how many events
    it leaves out (cost is never a silent zero); ``estimated_cost_usd`` is the part of it
    that is an estimate (usageUnits priced as input tokens: cost source ``estimated``).
    ``revenue_usd`` is the events' own ``revenueAmount`` (``revenue_count`` of them
    carried one).
    """

    event_count: int = 0
    usage_units: Decimal = ZERO
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = ZERO
    revenue_usd: Decimal = ZERO
    unpriced_count: int = 0
    estimated_cost_usd: Decimal = ZERO
    revenue_count: int = 0
    duration_ms_sum: int = 0
    duration_count: int = 0

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Measures:
        """From a row holding every measure by name (NULL sums read as zero)."""
        values: dict[str, Any] = {
            name.value: (row[name] if row[name] is not None else ZERO if name in AMOUNTS else 0)
            for name in Measure
        }
        return cls(**values)

    @property
    def margin_usd(self) -> Decimal:
        """``revenue_usd - cost_usd`` (USD)."""
        with localcontext(prec=EXACT_DIGITS):
            return self.revenue_usd - self.cost_usd

    def __add__(self, other: Measures) -> Measures:
        with localcontext(prec=EXACT_DIGITS):
            return Measures(
                **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
            )


@dataclass(frozen=True, slots=True)
class UsageRow:
    key: UsageKey
    measures: Measures
