"""Writes: syncing the price catalog from its source, and environment overrides."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from genai_prices import __version__ as genai_prices_version
from genai_prices import types as gp

from apps.accounts.audit import Actor, audit_change, changes_of
from apps.accounts.models import AuditEntry, Environment
from apps.core.errors import Conflict, ValidationFailed

from . import catalog as runtime
from .models import CATALOG_EPOCH, ModelPriceOverride, PriceModel, PriceProvider, PriceVersion
from .source import content_hash, load_source, price_doc, providers_from_json

# pg_advisory_xact_lock key: one catalog sync at a time across all processes.
_SYNC_LOCK = 0x7A4E_5052  # "zNPR"

_COLUMNS = {
    "input_mtok": "input_mtok",
    "output_mtok": "output_mtok",
    "cache_read_mtok": "cache_read_mtok",
    "cache_write_mtok": "cache_write_mtok",
    "input_audio_mtok": "input_audio_mtok",
    "output_audio_mtok": "output_audio_mtok",
    "output_reasoning_mtok": "output_reasoning_mtok",
    "requests_kcount": "requests_kcount",
}


@dataclass(frozen=True)
class SyncResult:
    created: int  # models priced for the first time (or listed again): a new open version
    changed: int  # models whose price changed: old version closed, new version opened
    unchanged: int
    retired: int  # models the source no longer lists: open version closed
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "retired": self.retired,
            "source": self.source,
        }


def _columns_for(info: gp.ModelInfo, at: dt.datetime) -> dict[str, Any]:
    """The main per-MTok columns: the price in force at ``at`` (a tier's base)."""
    price = info.get_prices(at)
    values: dict[str, Any] = {}
    has_tiers = False
    for key, column in _COLUMNS.items():
        value = getattr(price, key, None)
        if isinstance(value, gp.TieredPrices):
            has_tiers = True
            value = value.base
        values[column] = value
    for value in price.__dict__.values():
        if isinstance(value, gp.TieredPrices):
            has_tiers = True
    values["has_tiers"] = has_tiers
    values["is_conditional"] = not isinstance(info.prices, gp.ModelPrice)
    return values


def _provider_fields(raw: dict[str, Any], position: int) -> dict[str, Any]:
    return {
        "name": raw.get("name") or raw["id"],
        "api_pattern": raw.get("api_pattern") or "",
        "model_match": raw.get("model_match"),
        "provider_match": raw.get("provider_match"),
        "fallback_model_providers": raw.get("fallback_model_providers") or [],
        "pricing_urls": raw.get("pricing_urls") or [],
        "price_comments": raw.get("price_comments") or "",
        "position": position,
        "is_listed": True,
    }


def _model_fields(raw: dict[str, Any], position: int) -> dict[str, Any]:
    return {
        "name": raw.get("name") or "",
        "description": raw.get("description") or "",
        "match": raw["match"],
        "context_window": raw.get("context_window"),
        "deprecated": bool(raw.get("deprecated")),
        "price_comments": raw.get("price_comments") or "",
        "position": position,
        "is_listed": True,
    }


def _apply(obj: Any, fields: dict[str, Any]) -> bool:
    changed = False
    for name, value in fields.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed = True
    return changed


def catalog_sync(*, source: str | None = None, now: dt.datetime | None = None) -> SyncResult:
    """Bring the stored catalog in line with the source. Idempotent.

    A model seen for the first time gets a version in force since
    ``CATALOG_EPOCH`` (the source claims that price for any request time). A
    model whose price structure changed gets its open version closed at
    ``now`` and a new one opened at ``now``; nothing else about a version is
    ever written. Match rules and names are metadata and are kept current.
    """
    source = settings.MODEL_PRICES_SOURCE if source is None else source
    now = now or timezone.now()
    raw_providers = load_source(source)
    parsed = providers_from_json(raw_providers)
    label = source or f"genai-prices {genai_prices_version}"

    created = changed = unchanged = retired = 0
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SYNC_LOCK])

        providers = {p.provider_id: p for p in PriceProvider.objects.all()}
        models = {(m.provider_id, m.model_id): m for m in PriceModel.objects.all()}
        open_versions = {v.model_id: v for v in PriceVersion.objects.filter(effective_to=None)}
        versioned = set(PriceVersion.objects.values_list("model_id", flat=True).distinct())

        listed_providers: set[str] = set()
        provider_updates: list[PriceProvider] = []
        listed: list[tuple[PriceModel, dict[str, Any], gp.ModelInfo]] = []
        seen_models: set[tuple[int, str]] = set()
        new_models: list[PriceModel] = []
        model_updates: list[PriceModel] = []

        for position, (raw, parsed_provider) in enumerate(zip(raw_providers, parsed, strict=True)):
            pid = raw["id"]
            if pid in listed_providers:
                continue  # genai-prices matches the first provider of an id; so do we
            listed_providers.add(pid)
            fields = _provider_fields(raw, position)
            provider = providers.get(pid)
            if provider is None:
                provider = PriceProvider.objects.create(provider_id=pid, updated_at=now, **fields)
                providers[pid] = provider
            elif _apply(provider, fields):
                provider.updated_at = now
                provider_updates.append(provider)
            for model_position, (raw_model, model_info) in enumerate(
                zip(raw["models"], parsed_provider.models, strict=True)
            ):
                key = (provider.pk, raw_model["id"])
                if key in seen_models:
                    continue
                seen_models.add(key)
                mfields = _model_fields(raw_model, model_position)
                model = models.get(key)
                if model is None:
                    model = PriceModel(
                        provider=provider, model_id=raw_model["id"], updated_at=now, **mfields
                    )
                    new_models.append(model)
                    models[key] = model
                elif _apply(model, mfields):
                    model.updated_at = now
                    model_updates.append(model)
                listed.append((model, raw_model, model_info))

        for pid, provider in providers.items():
            if pid not in listed_providers and provider.is_listed:
                provider.is_listed = False
                provider.updated_at = now
                provider_updates.append(provider)
        if provider_updates:
            PriceProvider.objects.bulk_update(
                provider_updates, [*_provider_fields({"id": ""}, 0).keys(), "updated_at"]
            )
        if new_models:
            PriceModel.objects.bulk_create(new_models, batch_size=1000)
        for key, model in models.items():
            if key not in seen_models and model.is_listed:
                model.is_listed = False
                model.updated_at = now
                model_updates.append(model)
        if model_updates:
            PriceModel.objects.bulk_update(
                model_updates,
                [*_model_fields({"match": None}, 0).keys(), "updated_at"],
                batch_size=1000,
            )

        to_close: list[PriceVersion] = []
        to_create: list[PriceVersion] = []
        listed_pks: set[int] = set()
        for model, raw_model, info in listed:
            listed_pks.add(model.pk)
            doc = price_doc(info)
            digest = content_hash(doc)
            current = open_versions.get(model.pk)
            if current is not None and current.content_hash == digest:
                unchanged += 1
                continue
            if current is not None:
                if now <= current.effective_from:
                    raise ValueError(
                        f"cannot change {raw_model['id']}: its version starts after {now}"
                    )
                current.effective_to = now
                to_close.append(current)
                changed += 1
                start = now
            else:
                created += 1
                start = now if model.pk in versioned else CATALOG_EPOCH
            to_create.append(
                PriceVersion(
                    model=model,
                    effective_from=start,
                    content_hash=digest,
                    prices=doc,
                    source=label[:500],
                    created_at=now,
                    **_columns_for(info, now),
                )
            )
        for model_pk, current in open_versions.items():
            if model_pk not in listed_pks:
                if now <= current.effective_from:
                    continue
                current.effective_to = now
                to_close.append(current)
                retired += 1
        if to_close:
            # Close first: at most one open version per model (a partial unique index).
            PriceVersion.objects.bulk_update(to_close, ["effective_to"], batch_size=1000)
        if to_create:
            PriceVersion.objects.bulk_create(to_create, batch_size=1000)

        if to_close or to_create or provider_updates or new_models or model_updates:
            runtime.catalog_changed()
            transaction.on_commit(runtime.catalog_changed)

    return SyncResult(
        created=created, changed=changed, unchanged=unchanged, retired=retired, source=label
    )


def catalog_ensure_loaded() -> SyncResult | None:
    """Sync once if the catalog is empty (a fresh database); else do nothing."""
    if PriceVersion.objects.exists():
        return None
    return catalog_sync()


# --- Overrides --------------------------------------------------------------------------------

_RATE_FIELDS = (
    "input_mtok",
    "output_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "per_request_usd",
)
# Field names as the API spells them, for error messages.
API_FIELD = {
    "provider": "provider",
    "model": "model",
    "input_mtok": "inputCostPerMillion",
    "output_mtok": "outputCostPerMillion",
    "cache_read_mtok": "cacheReadCostPerMillion",
    "cache_write_mtok": "cacheWriteCostPerMillion",
    "per_request_usd": "costPerRequest",
    "discount_percent": "discountPercent",
    "note": "note",
}
OVERRIDE_FIELDS = tuple(API_FIELD)


def _validate_override(values: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    values = dict(values)
    values["provider"] = (values.get("provider") or "").strip().lower()
    values["model"] = (values.get("model") or "").strip().lower()
    values["note"] = values.get("note") or ""
    for name in (*_RATE_FIELDS, "discount_percent"):
        value = values.get(name)
        if value is None:
            continue
        if not isinstance(value, Decimal) or not value.is_finite():
            errors.setdefault(API_FIELD[name], []).append("Must be a decimal number.")
        elif value < 0:
            errors.setdefault(API_FIELD[name], []).append("Must not be negative.")
    discount = values.get("discount_percent")
    if isinstance(discount, Decimal) and discount > 100:
        errors.setdefault("discountPercent", []).append("Must be between 0 and 100.")
    has_rates = any(values.get(name) is not None for name in _RATE_FIELDS)
    if discount is None and not has_rates:
        errors.setdefault("_body", []).append(
            "Give custom rates (inputCostPerMillion and outputCostPerMillion) or discountPercent."
        )
    elif discount is not None and has_rates:
        errors.setdefault("_body", []).append(
            "Give either custom rates or discountPercent, not both."
        )
    elif has_rates:
        for name in ("input_mtok", "output_mtok"):
            if values.get(name) is None:
                errors.setdefault(API_FIELD[name], []).append("Required with custom rates.")
        if not values["model"]:
            errors.setdefault("model", []).append("Custom rates are for one model.")
    if not values["model"] and not values["provider"]:
        errors.setdefault("provider", []).append("Name a provider, a model, or both.")
    if errors:
        raise ValidationFailed(fields=errors)
    return values


def _save_override(override: ModelPriceOverride) -> None:
    try:
        with transaction.atomic():
            override.save()
    except IntegrityError as exc:
        raise Conflict(
            "An override for this provider and model already exists.", code="override_exists"
        ) from exc


@transaction.atomic
def override_create(
    *,
    environment: Environment,
    provider: str = "",
    model: str = "",
    input_mtok: Decimal | None = None,
    output_mtok: Decimal | None = None,
    cache_read_mtok: Decimal | None = None,
    cache_write_mtok: Decimal | None = None,
    per_request_usd: Decimal | None = None,
    discount_percent: Decimal | None = None,
    note: str = "",
    actor: Actor | None = None,
) -> ModelPriceOverride:
    values = _validate_override(
        {
            "provider": provider,
            "model": model,
            "input_mtok": input_mtok,
            "output_mtok": output_mtok,
            "cache_read_mtok": cache_read_mtok,
            "cache_write_mtok": cache_write_mtok,
            "per_request_usd": per_request_usd,
            "discount_percent": discount_percent,
            "note": note,
        }
    )
    override = ModelPriceOverride(environment=environment, **values)
    _save_override(override)
    _announce(environment.pk)
    audit_change(
        environment=environment,
        action=AuditEntry.Action.PRICE_OVERRIDE_CREATED,
        target_type="price_override",
        target_id=override.pk,
        actor=actor,
        detail=_set_values(override),
    )
    return override


def _set_values(override: ModelPriceOverride) -> dict[str, Any]:
    """The override's fields that are set (its provider and model always)."""
    values = {name: getattr(override, name) for name in OVERRIDE_FIELDS}
    return {
        API_FIELD[name]: value
        for name, value in values.items()
        if name in ("provider", "model") or value not in (None, "")
    }


@transaction.atomic
def override_update(
    *, override: ModelPriceOverride, changes: dict[str, Any], actor: Actor | None = None
) -> ModelPriceOverride:
    """Apply ``changes`` (model field names; a None rate clears it), then re-validate the whole."""
    unknown = set(changes) - set(OVERRIDE_FIELDS)
    if unknown:
        raise ValueError(f"unknown override fields: {sorted(unknown)}")
    current = {name: getattr(override, name) for name in OVERRIDE_FIELDS}
    values = _validate_override({**current, **changes})
    for name, value in values.items():
        setattr(override, name, value)
    override.updated_at = timezone.now()
    _save_override(override)
    _announce(override.environment_id)
    audit_change(
        environment_id=override.environment_id,
        action=AuditEntry.Action.PRICE_OVERRIDE_UPDATED,
        target_type="price_override",
        target_id=override.pk,
        actor=actor,
        detail={
            "provider": override.provider,
            "model": override.model,
            "changes": changes_of(
                {API_FIELD[k]: v for k, v in current.items()},
                {API_FIELD[k]: getattr(override, k) for k in OVERRIDE_FIELDS},
            ),
        },
    )
    return override


@transaction.atomic
def override_delete(*, override: ModelPriceOverride, actor: Actor | None = None) -> None:
    environment_id, override_id = override.environment_id, override.pk
    values = _set_values(override)
    override.delete()
    _announce(environment_id)
    audit_change(
        environment_id=environment_id,
        action=AuditEntry.Action.PRICE_OVERRIDE_DELETED,
        target_type="price_override",
        target_id=override_id,
        actor=actor,
        detail=values,
    )


def _announce(environment_id: object) -> None:
    runtime.overrides_changed(environment_id)
    transaction.on_commit(lambda: runtime.overrides_changed(environment_id))
