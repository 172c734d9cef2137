"""Where catalog prices come from, and the one JSON shape they are stored in.

The shape is the one genai-prices publishes (its ``data.json``: a list of
providers, each with ``models``, each with ``prices``), so a feed can be
dropped in as a file. Decimals are written as plain strings (``"2.5"``, never
a float), so hashing and storage are exact and canonical.

Nothing here touches the network: the source is the data bundled with the
installed ``genai-prices`` package, or a local file named by
``settings.MODEL_PRICES_SOURCE`` (a path or a ``file://`` URL).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from genai_prices import types as gp

from apps.core.money import decimal_str

JSON = dict[str, Any]


class SourceError(Exception):
    """The configured price source cannot be read or is not in the expected shape."""


# --- Serialising genai-prices objects to the published JSON shape ----------------------


def match_to_json(clause: Any) -> JSON | None:
    """A genai-prices match clause -> ``{"starts_with": ...}`` / ``{"or": [...]}`` etc."""
    if clause is None:
        return None
    if isinstance(clause, gp.ClauseOr):
        return {"or": [match_to_json(c) for c in clause.or_]}
    if isinstance(clause, gp.ClauseAnd):
        return {"and": [match_to_json(c) for c in clause.and_]}
    for name in ("starts_with", "ends_with", "contains", "regex", "equals"):
        if hasattr(clause, name):
            return {name: getattr(clause, name)}
    raise SourceError(f"unknown match clause {clause!r}")


def _price_value_to_json(value: Decimal | gp.TieredPrices) -> Any:
    if isinstance(value, gp.TieredPrices):
        return {
            "base": decimal_str(value.base),
            "tiers": [{"start": t.start, "price": decimal_str(t.price)} for t in value.tiers],
        }
    return decimal_str(value)


def model_price_to_json(price: gp.ModelPrice) -> JSON:
    return {
        key: _price_value_to_json(value)
        for key, value in price.__dict__.items()
        if not key.startswith("_") and value is not None
    }


def _time_to_json(value: dt.time) -> str:
    return value.isoformat()


def constraint_to_json(constraint: Any) -> JSON | None:
    if constraint is None:
        return None
    if isinstance(constraint, gp.StartDateConstraint):
        return {"start_date": constraint.start_date.isoformat()}
    if isinstance(constraint, gp.TimeOfDateConstraint):
        return {
            "start_time": _time_to_json(constraint.start_time),
            "end_time": _time_to_json(constraint.end_time),
        }
    raise SourceError(f"unknown price constraint {constraint!r}")


def prices_to_json(prices: gp.ModelPrice | list[gp.ConditionalPrice]) -> Any:
    if isinstance(prices, gp.ModelPrice):
        return model_price_to_json(prices)
    out = []
    for conditional in prices:
        item: JSON = {"prices": model_price_to_json(conditional.prices)}
        if conditional.constraint is not None:
            item["constraint"] = constraint_to_json(conditional.constraint)
        out.append(item)
    return out


def price_doc(model: gp.ModelInfo) -> JSON:
    """Everything that determines what a model costs: the versioned part of the catalog."""
    doc: JSON = {"prices": prices_to_json(model.prices)}
    if model.price_variants:
        doc["price_variants"] = [
            {
                "when": dict(variant.when),
                "prices": model_price_to_json(variant.prices),
                **(
                    {"constraint": constraint_to_json(variant.constraint)}
                    if variant.constraint is not None
                    else {}
                ),
            }
            for variant in model.price_variants
        ]
    return doc


def model_to_json(model: gp.ModelInfo) -> JSON:
    return {
        "id": model.id,
        "match": match_to_json(model.match),
        "name": model.name,
        "description": model.description,
        "context_window": model.context_window,
        "price_comments": model.price_comments,
        "deprecated": model.deprecated,
        **price_doc(model),
    }


def provider_to_json(provider: gp.Provider) -> JSON:
    """A provider in the published shape (usage extractors left out: we do not need them)."""
    return {
        "id": provider.id,
        "name": provider.name,
        "api_pattern": provider.api_pattern,
        "pricing_urls": provider.pricing_urls,
        "description": provider.description,
        "price_comments": provider.price_comments,
        "model_match": match_to_json(provider.model_match),
        "provider_match": match_to_json(provider.provider_match),
        "fallback_model_providers": provider.fallback_model_providers,
        "models": [model_to_json(m) for m in provider.models],
    }


def content_hash(doc: Any) -> str:
    """SHA-256 of the canonical JSON of ``doc`` (sorted keys, no whitespace)."""
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(raw.encode()).hexdigest()


# --- Parsing the published JSON shape back into genai-prices objects ------------------


def providers_from_json(raw: Any) -> list[gp.Provider]:
    """Validate a published-shape provider list with genai-prices' own parser."""
    from genai_prices.types import _providers_from_raw

    if not isinstance(raw, list):
        raise SourceError("a price feed must be a JSON list of providers")
    cleaned = [{k: v for k, v in p.items() if k != "extractors"} for p in raw]
    try:
        return _providers_from_raw(cleaned)
    except Exception as exc:  # pydantic.ValidationError and friends
        raise SourceError(f"the price feed is not in the genai-prices shape: {exc}") from exc


def model_info_from_json(raw: JSON) -> gp.ModelInfo:
    """One stored model (match rules + price doc) -> a genai-prices ``ModelInfo``."""
    providers = providers_from_json(
        [{"id": "_", "name": "_", "api_pattern": "^$", "models": [raw]}]
    )
    return providers[0].models[0]


# --- Reading the configured source -------------------------------------------------------


def _path_of(source: str) -> Path:
    if source.startswith("file://"):
        return Path(unquote(urlsplit(source).path))
    if "://" in source:
        # Deliberately no HTTP: a feed is fetched by whoever deploys us and dropped on disk.
        raise SourceError(
            f"MODEL_PRICES_SOURCE must be a local path or file:// URL, got {source!r}"
        )
    return Path(source)


def load_source(source: str = "") -> list[JSON]:
    """The catalog as a list of providers in the published shape, canonicalised.

    ``source`` empty: the data bundled with the installed genai-prices.
    Otherwise a local JSON file in the shape genai-prices publishes. Numbers are
    parsed as ``Decimal``; the feed is validated by genai-prices' parser and then
    re-serialised, so equal prices always serialise (and hash) equally.
    """
    if not source:
        from genai_prices.data import providers

        return [provider_to_json(p) for p in providers]
    path = _path_of(source)
    try:
        raw = json.loads(path.read_bytes(), parse_float=Decimal)
    except OSError as exc:
        raise SourceError(f"cannot read price source {path}: {exc}") from exc
    except ValueError as exc:
        raise SourceError(f"price source {path} is not JSON: {exc}") from exc
    return [provider_to_json(p) for p in providers_from_json(raw)]
