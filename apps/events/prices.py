"""How an event's cost is found (PRODUCT.md §3.6): explicit > negotiated rate > catalog.

The ledger's one door to ``apps.pricing.costing``. ``quote_cost`` is served from
an in-process catalog cache, so pricing an event costs no query in steady
state. Rules decided here:

* ``costAmount`` given: that is the cost (source ``explicit``), whatever else
  the event carries.
* a model and at least one token count: the pricing engine's quote (source
  ``override_rate`` / ``override_discount`` / ``catalog``), or ``unpriced`` with
  reason ``unknown_model`` when it knows no price; re-costing prices it later.
* a model without token counts and a whole, positive ``usageUnits`` that the caller
  sent (the public quickstart sends ``usageUnits: response.usage.total_tokens``;
  the default of 1 is no token count): ``usageUnits``
  priced as input tokens by the same engine, source ``estimated`` -- an estimate,
  said so in the event, the API, the pages and the CSV, and counted apart
  (``estimated_cost_usd``); the token counts make it exact. A model without token
  counts and any other (or no) ``usageUnits``: ``unpriced`` with reason
  ``no_token_counts``. Re-costing re-estimates estimates only.
* no model and no ``costAmount``: ``unpriced`` with reason ``no_model``.

Never a silent zero: an unknown cost is NULL, and counted.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from decimal import Decimal
from typing import Any, NamedTuple

from apps.core.money import quantize_event_amount
from apps.pricing.catalog import Catalog, EnvOverrides, get_catalog, get_overrides
from apps.pricing.costing import (
    SOURCE_CATALOG,
    SOURCE_OVERRIDE_DISCOUNT,
    SOURCE_OVERRIDE_RATE,
    InvalidUsage,
    TokenUsage,
    infer_provider,
    quote_cost,
)

from .models import CostSource, UnpricedReason

__all__ = ["BatchPricer", "InvalidUsage", "Pricing", "price_event"]

_HUNDRED = Decimal(100)


class Pricing(NamedTuple):
    cost_usd: Decimal | None
    source: str
    unpriced_reason: str
    price_version_id: int | None
    provider: str


def estimated_input_tokens(usage_units: Decimal | None) -> int | None:
    """``usageUnits`` as input tokens for an estimate: a whole positive count, else None."""
    if usage_units is None or usage_units <= 0 or usage_units != usage_units.to_integral_value():
        return None
    return int(usage_units)


def _estimate(pricing: Pricing) -> Pricing:
    if pricing.cost_usd is None:
        return pricing
    return pricing._replace(source=CostSource.ESTIMATED)


def price_event(
    *,
    environment_id: uuid.UUID,
    model: str,
    provider: str,
    at: dt.datetime,
    explicit_cost: Decimal | None,
    usage_units: Decimal | None = None,
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read_tokens: int | None,
    cache_write_tokens: int | None,
    reasoning_tokens: int | None,
) -> Pricing:
    """The cost of one event and how it was found (amounts USD, 12 dp).

    Raises ``InvalidUsage`` (a 400) for token counts the engine finds inconsistent.
    """
    if not provider and model:
        provider = infer_provider(model) or ""
    if explicit_cost is not None:
        return Pricing(explicit_cost, CostSource.EXPLICIT, "", None, provider)
    if not model:
        return Pricing(None, CostSource.UNPRICED, UnpricedReason.NO_MODEL, None, provider)
    tokens = (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens)
    if all(count is None for count in tokens):
        estimated = estimated_input_tokens(usage_units)
        if estimated is None:
            return Pricing(None, CostSource.UNPRICED, UnpricedReason.NO_TOKENS, None, provider)
        return _estimate(
            price_event(
                environment_id=environment_id,
                model=model,
                provider=provider,
                at=at,
                explicit_cost=None,
                input_tokens=estimated,
                output_tokens=None,
                cache_read_tokens=None,
                cache_write_tokens=None,
                reasoning_tokens=None,
            )
        )
    quote = quote_cost(
        environment_id=environment_id,
        model=model,
        provider=provider or None,
        usage=TokenUsage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
            reasoning_tokens=reasoning_tokens,
        ),
        at=at,
    )
    if quote.cost_usd is None:
        return Pricing(None, CostSource.UNPRICED, UnpricedReason.UNKNOWN_MODEL, None, provider)
    return Pricing(
        quantize_event_amount(quote.cost_usd),
        quote.source,
        "",
        quote.price_version_id,
        provider or (quote.provider or ""),
    )


class _Plan:
    """What pricing one (model, provider) needs, resolved once per batch."""

    __slots__ = ("discount", "model_pk", "names", "provider", "quote_provider", "rate")

    def __init__(self, pricer: BatchPricer, model: str, provider: str) -> None:
        catalog = pricer.catalog
        if not provider and model:
            provider = infer_provider(model) or ""
        self.provider = provider
        model_ref = model.strip().lower()
        given = provider.strip().lower() or None
        resolved = catalog.resolve(given, model_ref) if model_ref else None
        self.model_pk: int | None = None
        if resolved is not None:
            provider_id: str | None = resolved.provider_id
            names: tuple[str, ...] = (
                (model_ref,) if resolved.model_id == model_ref else (model_ref, resolved.model_id)
            )
            self.model_pk = resolved.model_pk
        else:
            provider_id = given or (catalog.infer_provider(model_ref) if model_ref else None)
            names = (model_ref,)
        self.names = names
        self.quote_provider = provider_id or ""
        overrides = pricer.overrides
        priceable = bool(model_ref) and not overrides.empty
        self.rate = overrides.rate_for(provider_id, names) if priceable else None
        self.discount: Decimal | None = (
            overrides.discount_for(provider_id, names) if priceable else None
        )


class BatchPricer:
    """``price_event`` for many events of one environment: what depends only on the
    (model, provider) pair -- provider inference, catalog match, overrides -- is
    resolved once per pair and batch; per event remain the price version at its
    ``occurred_at`` and the arithmetic. Same results as ``price_event`` (tested).

    Takes token counts already validated (``validation.py``: non-negative,
    cache within input, reasoning within output).
    """

    def __init__(self, environment_id: uuid.UUID) -> None:
        self._environment_id = environment_id
        self._plans: dict[tuple[str, str], _Plan] = {}

    # Loaded on the first event that names a model: a batch of events without one
    # (usage with ``costAmount``, or unpriced) needs neither the catalog nor the
    # overrides, and in a fresh database does not load the catalog (seconds).
    @functools.cached_property
    def catalog(self) -> Catalog:
        return get_catalog()

    @functools.cached_property
    def overrides(self) -> EnvOverrides:
        return get_overrides(self._environment_id)

    def _plan(self, model: str, provider: str) -> _Plan:
        plan = self._plans.get((model, provider))
        if plan is None:
            plan = self._plans[(model, provider)] = _Plan(self, model, provider)
        return plan

    def price(
        self,
        *,
        model: str,
        provider: str,
        at: dt.datetime,
        explicit_cost: Decimal | None,
        usage_units: Decimal | None = None,
        input_tokens: int | None,
        output_tokens: int | None,
        cache_read_tokens: int | None,
        cache_write_tokens: int | None,
        reasoning_tokens: int | None,
    ) -> Pricing:
        if not model:
            if explicit_cost is not None:
                return Pricing(explicit_cost, CostSource.EXPLICIT, "", None, provider)
            return Pricing(None, CostSource.UNPRICED, UnpricedReason.NO_MODEL, None, provider)
        plan = self._plan(model, provider)
        if explicit_cost is not None:
            return Pricing(explicit_cost, CostSource.EXPLICIT, "", None, plan.provider)
        if (
            input_tokens is None
            and output_tokens is None
            and cache_read_tokens is None
            and cache_write_tokens is None
            and reasoning_tokens is None
        ):
            estimated = estimated_input_tokens(usage_units)
            if estimated is None:
                return Pricing(
                    None, CostSource.UNPRICED, UnpricedReason.NO_TOKENS, None, plan.provider
                )
            return _estimate(
                self.price(
                    model=model,
                    provider=provider,
                    at=at,
                    explicit_cost=None,
                    input_tokens=estimated,
                    output_tokens=None,
                    cache_read_tokens=None,
                    cache_write_tokens=None,
                    reasoning_tokens=None,
                )
            )
        input_tokens = input_tokens or 0
        output_tokens = output_tokens or 0
        cache_read = cache_read_tokens or 0
        cache_write = cache_write_tokens or 0
        provider_out = plan.provider or plan.quote_provider
        if plan.rate is not None:
            cost: Any = plan.rate.cost(
                uncached_input=input_tokens - cache_read - cache_write,
                cache_read=cache_read,
                cache_write=cache_write,
                output=output_tokens,
                requests=1,
            )
            return Pricing(
                quantize_event_amount(cost), SOURCE_OVERRIDE_RATE, "", None, provider_out
            )
        if plan.model_pk is None:
            return Pricing(
                None, CostSource.UNPRICED, UnpricedReason.UNKNOWN_MODEL, None, plan.provider
            )
        version = self.catalog.version_at(plan.model_pk, at)
        compiled = version.compiled_at(at) if version is not None else None
        if version is None or compiled is None:
            return Pricing(
                None, CostSource.UNPRICED, UnpricedReason.UNKNOWN_MODEL, None, plan.provider
            )
        cost = compiled.cost(
            {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cache_read_tokens": cache_read,
                "cache_write_tokens": cache_write,
                "output_reasoning_tokens": reasoning_tokens or 0,
            },
            1,
        )
        source = SOURCE_CATALOG
        if plan.discount is not None:
            cost = cost * (_HUNDRED - plan.discount) / _HUNDRED
            source = SOURCE_OVERRIDE_DISCOUNT
        return Pricing(quantize_event_amount(cost), source, "", version.version_id, provider_out)
