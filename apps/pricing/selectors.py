"""Reads: the catalog (global, not tenant data) and an environment's overrides."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from genai_prices import types as gp

from apps.accounts.models import Environment
from apps.core.tenancy import get_scoped_or_404, scoped

from .catalog import get_catalog
from .models import ModelPriceOverride, PriceVersion

# genai-prices price keys -> the camelCase names we render.
PRICE_FIELD_NAMES = {
    "input_mtok": "inputCostPerMillion",
    "output_mtok": "outputCostPerMillion",
    "cache_read_mtok": "cacheReadCostPerMillion",
    "cache_write_mtok": "cacheWriteCostPerMillion",
    "input_audio_mtok": "inputAudioCostPerMillion",
    "output_audio_mtok": "outputAudioCostPerMillion",
    "output_reasoning_mtok": "reasoningCostPerMillion",
    "requests_kcount": "costPerThousandRequests",
}


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


def render_price_components(price: gp.ModelPrice) -> dict[str, Any]:
    """Every component of one resolved price: ``{"inputMtok": Decimal, "outputMtok": {...}}``."""
    out: dict[str, Any] = {}
    for key, value in price.__dict__.items():
        if key.startswith("_") or value is None:
            continue
        if isinstance(value, gp.TieredPrices):
            out[_camel(key)] = {
                "base": value.base,
                "tiers": [{"aboveInputTokens": t.start, "price": t.price} for t in value.tiers],
            }
        else:
            out[_camel(key)] = value
    return out


def price_versions(
    *, provider: str | None = None, model_pk: int | None = None, history: bool = False
) -> QuerySet[PriceVersion]:
    """Catalog versions in force (or, with ``history``, all of them)."""
    queryset = PriceVersion.objects.select_related("model__provider")
    if not history:
        queryset = queryset.filter(effective_to__isnull=True)
    if provider:
        queryset = queryset.filter(model__provider__provider_id=provider.strip().lower())
    if model_pk is not None:
        queryset = queryset.filter(model_id=model_pk)
    return queryset


def catalog_model_pk(provider: str | None, model: str) -> int | None:
    """Resolve a model reference (alias, dated snapshot) to our catalog model, as costing does."""
    resolved = get_catalog().resolve(
        (provider or "").strip().lower() or None, model.strip().lower()
    )
    return resolved.model_pk if resolved is not None else None


def price_in_force(provider: str | None, model: str, at: dt.datetime) -> dict[str, Any] | None:
    """The catalog price of ``model`` at ``at``, rendered for display; None when unpriced.

    Components are the price genai-prices would apply at ``at`` (date and
    time-of-day conditions resolved; context-size tiers listed). Amounts are
    ``Decimal`` (rendered as strings by the API renderer).
    """
    if not model or not model.strip():
        return None
    catalog = get_catalog()
    resolved = catalog.resolve((provider or "").strip().lower() or None, model.strip().lower())
    if resolved is None:
        return None
    at = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
    version = catalog.version_at(resolved.model_pk, at)
    if version is None:
        return None
    price = version.model_price_at(at)
    components = render_price_components(price)

    def base(key: str) -> Decimal | None:
        value = getattr(price, key, None)
        return value.base if isinstance(value, gp.TieredPrices) else value

    return {
        "provider": resolved.provider_id,
        "model": resolved.model_id,
        "priceVersionId": version.version_id,
        "effectiveFrom": version.effective_from,
        "effectiveTo": version.effective_to,
        **{name: base(key) for key, name in PRICE_FIELD_NAMES.items()},
        "hasTiers": any(isinstance(v, gp.TieredPrices) for v in price.__dict__.values()),
        "components": components,
    }


def overrides_for(environment: Environment) -> QuerySet[ModelPriceOverride]:
    return scoped(ModelPriceOverride, environment)


def override_get(environment: Environment, override_id: object) -> ModelPriceOverride:
    return get_scoped_or_404(ModelPriceOverride, environment, pk=override_id)
