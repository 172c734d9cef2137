"""What an AI request cost: the one function the ingestion pipeline calls.

Precedence (PRODUCT.md §3.6, below an explicit ``costAmount`` which the caller
handles): the environment's custom rate for the model > the catalog price less
the environment's discount for the model, else for the provider > the catalog
price > unpriced. Unpriced is ``cost_usd=None``, never zero.

Exact: ``Decimal`` throughout, the catalog total equal to genai-prices'
``calc_price`` for the same usage and time, rounded once to 12 places.
Hot path: no database query in steady state (see ``apps.pricing.catalog``).

Usage conventions: ``input_tokens`` is the whole prompt including cache reads
and writes; ``reasoning_tokens`` are part of ``output_tokens`` (priced
separately only where the catalog has a reasoning price, as genai-prices does).
Inconsistent counts (negative, cache > input, reasoning > output) raise
``InvalidUsage`` (a 400 ``invalid_usage``), never a guessed cost.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from apps.core.money import quantize_event_amount

from .catalog import InvalidUsage, get_catalog, get_overrides

__all__ = [
    "CostQuote",
    "InvalidUsage",
    "QuoteRequest",
    "TokenUsage",
    "infer_provider",
    "quote_cost",
    "quote_costs",
]

SOURCE_CATALOG = "catalog"
SOURCE_OVERRIDE_RATE = "override_rate"
SOURCE_OVERRIDE_DISCOUNT = "override_discount"
SOURCE_UNPRICED = "unpriced"

_HUNDRED = Decimal(100)


@dataclass(frozen=True)
class TokenUsage:
    input_tokens: int | None = None  # whole prompt INCLUDING cached tokens (providers' convention)
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None  # part of output for most providers; priced as genai-prices
    requests: int = 1


@dataclass(frozen=True)
class CostQuote:
    cost_usd: Decimal | None  # None means unpriced (unknown model / no price at `at`)
    source: str  # "catalog" | "override_rate" | "override_discount" | "unpriced"
    price_version_id: int | None  # the catalog row used (also set for discounted catalog prices)
    provider: str | None  # resolved provider id (inferred from the model name when not given)
    model: str | None  # resolved catalog model id (snapshot/alias resolved)


@dataclass(frozen=True)
class QuoteRequest:
    model: str | None
    provider: str | None
    usage: TokenUsage
    at: dt.datetime


def _count(name: str, value: object) -> int:
    if value is None:
        return 0
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidUsage(
            f"{name} must be a whole number.", fields={name: ["Must be an integer."]}
        )
    if value < 0:
        raise InvalidUsage(f"{name} must not be negative.", fields={name: ["Must be >= 0."]})
    return value


def _counts(usage: TokenUsage) -> tuple[dict[str, int], int]:
    """TokenUsage -> genai-prices usage keys (only the reported ones) and the request count."""
    input_tokens = _count("input_tokens", usage.input_tokens)
    output_tokens = _count("output_tokens", usage.output_tokens)
    cache_read = _count("cache_read_tokens", usage.cache_read_tokens)
    cache_write = _count("cache_write_tokens", usage.cache_write_tokens)
    reasoning = _count("reasoning_tokens", usage.reasoning_tokens)
    requests = _count("requests", usage.requests)
    if cache_read + cache_write > input_tokens:
        raise InvalidUsage(
            "Cached tokens exceed input_tokens (input counts the whole prompt, cached included).",
            fields={"cache_read_tokens": ["cache read + cache write exceed input_tokens."]},
        )
    if reasoning > output_tokens:
        raise InvalidUsage(
            "reasoning_tokens exceed output_tokens (reasoning is part of the output).",
            fields={"reasoning_tokens": ["Exceeds output_tokens."]},
        )
    counts = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "output_reasoning_tokens": reasoning,
    }
    return counts, requests


def _utc(at: dt.datetime) -> dt.datetime:
    # Naive times are UTC (as genai-prices treats them).
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


def _norm(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    return value or None


def _quote(
    environment_id: uuid.UUID,
    model: str | None,
    provider: str | None,
    usage: TokenUsage,
    at: dt.datetime,
) -> CostQuote:
    counts, requests = _counts(usage)
    catalog = get_catalog()
    model_ref = _norm(model)
    given_provider = _norm(provider)
    if model_ref is None:
        return CostQuote(None, SOURCE_UNPRICED, None, given_provider, None)

    resolved = catalog.resolve(given_provider, model_ref)
    if resolved is not None:
        provider_id: str | None = resolved.provider_id
        names: tuple[str, ...] = (
            (model_ref,) if resolved.model_id == model_ref else (model_ref, resolved.model_id)
        )
        model_id: str | None = resolved.model_id
    else:
        provider_id = given_provider or catalog.infer_provider(model_ref)
        names = (model_ref,)
        model_id = None

    overrides = get_overrides(environment_id)
    if not overrides.empty and (rate := overrides.rate_for(provider_id, names)) is not None:
        cost = rate.cost(
            uncached_input=counts["input_tokens"]
            - counts["cache_read_tokens"]
            - counts["cache_write_tokens"],
            cache_read=counts["cache_read_tokens"],
            cache_write=counts["cache_write_tokens"],
            output=counts["output_tokens"],
            requests=requests,
        )
        return CostQuote(
            quantize_event_amount(cost), SOURCE_OVERRIDE_RATE, None, provider_id, model_id
        )

    if resolved is None:
        return CostQuote(None, SOURCE_UNPRICED, None, provider_id, None)
    at = _utc(at)
    version = catalog.version_at(resolved.model_pk, at)
    compiled = version.compiled_at(at) if version is not None else None
    if version is None or compiled is None:
        return CostQuote(None, SOURCE_UNPRICED, None, provider_id, model_id)
    cost = compiled.cost(counts, requests)
    source = SOURCE_CATALOG
    if not overrides.empty:
        discount = overrides.discount_for(provider_id, names)
        if discount is not None:
            cost = cost * (_HUNDRED - discount) / _HUNDRED
            source = SOURCE_OVERRIDE_DISCOUNT
    return CostQuote(quantize_event_amount(cost), source, version.version_id, provider_id, model_id)


def quote_cost(
    *,
    environment_id: uuid.UUID,
    model: str | None,
    provider: str | None,
    usage: TokenUsage,
    at: dt.datetime,
) -> CostQuote:
    """The cost of one AI request of ``environment_id`` made at ``at``."""
    return _quote(environment_id, model, provider, usage, at)


def quote_costs(*, environment_id: uuid.UUID, requests: Iterable[QuoteRequest]) -> list[CostQuote]:
    """:func:`quote_cost` for a batch of one environment (one cache check for all)."""
    return [_quote(environment_id, r.model, r.provider, r.usage, r.at) for r in requests]


def infer_provider(model: str) -> str | None:
    """The provider genai-prices would pick for ``model`` (e.g. "claude-…" -> "anthropic")."""
    ref = _norm(model)
    if ref is None:
        return None
    return get_catalog().infer_provider(ref)
