"""Costs under a scenario: the events' own cost, or the same tokens repriced with the
catalog's code (a model swap: :func:`apps.pricing.costing.quote_cost`; a provider price
change: the catalog's :class:`~apps.pricing.catalog.RateOverride` arithmetic).

A group is one subscription period x feature x model: its tokens (input including cache
reads and writes, output including reasoning) and request count are repriced as one
request shape, at one instant (the window's end, or now when earlier).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from apps.core.money import quantize_event_amount
from apps.events.usage import Measure
from apps.pricing.costing import TokenUsage, infer_provider, quote_cost

from .catalog import ScenarioCatalog

ZERO = Decimal(0)

# What each subscription period x feature x model group sums (one ledger read).
GROUP_MEASURES = (
    Measure.USAGE_UNITS,
    Measure.COST_USD,
    Measure.EVENT_COUNT,
    Measure.UNPRICED_COUNT,
    Measure.INPUT_TOKENS,
    Measure.OUTPUT_TOKENS,
    Measure.CACHE_READ_TOKENS,
    Measure.CACHE_WRITE_TOKENS,
    Measure.REASONING_TOKENS,
)


@dataclasses.dataclass(frozen=True)
class Group:
    feature_id: Any
    model: str
    provider: str
    sums: dict[Measure, Any]

    @property
    def units(self) -> Decimal:
        return Decimal(self.sums.get(Measure.USAGE_UNITS, ZERO))

    def count(self, measure: Measure) -> int:
        return int(self.sums.get(measure, 0))


@dataclasses.dataclass(frozen=True)
class GroupCost:
    cost: Decimal  # USD, priced events only
    unpriced: int  # events left out of ``cost``
    repriced: bool


def _scaled(value: int, ratio: Decimal | None) -> int:
    if ratio is None:
        return value
    return int((Decimal(value) * ratio).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _tokens(group: Group, swap: Any) -> TokenUsage:
    into, out = (None, None) if swap is None else (swap.get("inputRatio"), swap.get("outputRatio"))
    cache_read = _scaled(group.count(Measure.CACHE_READ_TOKENS), into)
    cache_write = _scaled(group.count(Measure.CACHE_WRITE_TOKENS), into)
    output = _scaled(group.count(Measure.OUTPUT_TOKENS), out)
    return TokenUsage(
        input_tokens=max(
            _scaled(group.count(Measure.INPUT_TOKENS), into), cache_read + cache_write
        ),
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=min(_scaled(group.count(Measure.REASONING_TOKENS), out), output),
        requests=max(group.count(Measure.EVENT_COUNT), 1),
    )


def _swap_for(catalog: ScenarioCatalog, group: Group) -> Any:
    for swap in catalog.swaps:
        if catalog.feature_ids.get(swap.get("featureKey")) != group.feature_id:
            continue
        source = swap.get("fromModel")
        if source is None or source.lower() == group.model.lower():
            return swap
    return None


def group_cost(
    catalog: ScenarioCatalog, group: Group, *, environment_id: Any, at: dt.datetime
) -> GroupCost:
    """The group's cost in this scenario (its stored cost unless a change reprices it)."""
    swap = _swap_for(catalog, group)
    model, provider = group.model, group.provider
    if swap is not None:
        model = swap.get("toModel")
        provider = swap.get("toProvider") or infer_provider(model) or ""
    rate = catalog.rates.get(((provider or "").lower(), (model or "").lower()))
    if swap is None and rate is None:
        return GroupCost(
            Decimal(group.sums.get(Measure.COST_USD, ZERO)),
            group.count(Measure.UNPRICED_COUNT),
            repriced=False,
        )
    usage = _tokens(group, swap)
    if rate is not None:
        cost = rate.cost(
            uncached_input=(usage.input_tokens or 0)
            - (usage.cache_read_tokens or 0)
            - (usage.cache_write_tokens or 0),
            cache_read=usage.cache_read_tokens or 0,
            cache_write=usage.cache_write_tokens or 0,
            output=usage.output_tokens or 0,
            requests=usage.requests,
        )
        return GroupCost(quantize_event_amount(cost), 0, repriced=True)
    quote = quote_cost(
        environment_id=environment_id, model=model, provider=provider, usage=usage, at=at
    )
    if quote.cost_usd is None:
        return GroupCost(ZERO, group.count(Measure.EVENT_COUNT), repriced=True)
    return GroupCost(quote.cost_usd, 0, repriced=True)
