"""How an event's cost is found (PRODUCT.md §3.6): explicit > negotiated rate > catalog.

The ledger's one door to ``apps.pricing.costing``. ``quote_cost`` is served from
an in-process catalog cache, so pricing an event costs no query in steady
state. Rules decided here:

* ``costAmount`` given: that is the cost (source ``explicit``), whatever else
  the event carries.
* a model and at least one token count: the pricing engine's quote (source
  ``override_rate`` / ``override_discount`` / ``catalog``), or ``unpriced`` with
  reason ``unknown_model`` when it knows no price; re-costing prices it later.
* a model without token counts (e.g. only ``usageUnits``): ``unpriced`` with
  reason ``no_token_counts``. ``usageUnits`` is the caller's own unit; pricing
  it as input tokens would print a wrong number, and a wrong number is worse
  than an honest "unknown". Send ``costAmount`` or the token counts instead.
* no model and no ``costAmount``: ``unpriced`` with reason ``no_model``.

Never a silent zero: an unknown cost is NULL, and counted.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

from apps.core.money import quantize_event_amount
from apps.pricing.costing import InvalidUsage, TokenUsage, infer_provider, quote_cost

from .models import CostSource, UnpricedReason

__all__ = ["InvalidUsage", "Pricing", "price_event"]


@dataclass(frozen=True, slots=True)
class Pricing:
    cost_usd: Decimal | None
    source: str
    unpriced_reason: str
    price_version_id: int | None
    provider: str


def price_event(
    *,
    environment_id: uuid.UUID,
    model: str,
    provider: str,
    at: dt.datetime,
    explicit_cost: Decimal | None,
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
        return Pricing(None, CostSource.UNPRICED, UnpricedReason.NO_TOKENS, None, provider)
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
