"""The in-process catalog and override caches behind :func:`apps.pricing.costing.quote_cost`.

Steady state costs no database query: the whole catalog (match rules and every
price version) and each environment's overrides are held in memory. They are
dropped when a version stamp in Redis changes (checked at most once per
``CHECK_SECONDS`` per process) and in any case after ``*_MAX_AGE`` seconds. The
process that makes a change drops its own copy at once.

Stamps are random tokens, not counters, so a Redis flush followed by a new bump
can never look like "no change". A missing stamp (flushed Redis) is read as "no
news"; the max age bounds how long a lost signal can keep stale data.

Model matching is genai-prices' own (``DataSnapshot.find_provider_model``) run
over the stored match rules, so aliases and dated snapshots resolve exactly as
the library resolves them; the result is mapped back to our ``PriceModel`` row.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import redis
from genai_prices import types as gp
from genai_prices.data_snapshot import DataSnapshot

from apps.core.errors import ValidationFailed
from apps.core.memo import LocalCache
from apps.core.redis import env_key, get_redis, global_key
from apps.core.tenancy import scoped

logger = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
CATALOG_MAX_AGE = 300.0
OVERRIDES_MAX_AGE = 60.0
_MEMO_LIMIT = 100_000  # distinct (provider, model) strings remembered per catalog load

CATALOG_STAMP_KEY = global_key("pricing", "catalog-stamp")


def overrides_stamp_key(environment_id: object) -> str:
    return env_key(environment_id, "pricing", "overrides-stamp")


class InvalidUsage(ValidationFailed):
    code = "invalid_usage"
    default_message = "The token counts are not consistent."


# --- Compiled prices: genai-prices' arithmetic, without its per-call overhead ------------


@dataclass(frozen=True)
class CompiledPrice:
    """One genai-prices ``ModelPrice`` prepared for repeated pricing.

    Reproduces ``ModelPrice.calc_price`` step by step (same leaf decomposition,
    same term order, same ``price * count / per`` Decimal operations), so the
    total is identical to the library's; tests check that over the whole
    bundled catalog.
    """

    # (usage_key, descendant usage keys) in the order genai-prices decomposes leaves.
    leaf_steps: tuple[tuple[str, tuple[str, ...]], ...]
    # (usage_key, price, per) in the order genai-prices sums them.
    terms: tuple[tuple[str, Decimal | gp.TieredPrices, int], ...]
    has_tiers: bool

    @classmethod
    def build(cls, model_price: gp.ModelPrice) -> CompiledPrice:
        from genai_prices.decompose import is_descendant_or_self
        from genai_prices.types import _collect_resolved_model_prices
        from genai_prices.units import _get_registry
        from genai_prices.validation import validate_priced_units

        registry = _get_registry()
        resolved = _collect_resolved_model_prices(model_price, registry)
        validate_priced_units(tuple(unit for unit, _ in resolved), registry)
        token_units = [unit for unit, _ in resolved if unit.usage_key != "requests"]
        ordered = sorted(token_units, key=lambda unit: (-len(unit.dimensions), unit.usage_key))
        leaf_steps = tuple(
            (
                unit.usage_key,
                tuple(
                    other.usage_key
                    for other in ordered
                    if other is not unit and is_descendant_or_self(unit, other)
                ),
            )
            for unit in ordered
        )
        terms = tuple((unit.usage_key, price, unit.per) for unit, price in resolved)
        has_tiers = any(isinstance(price, gp.TieredPrices) for _, price in resolved)
        return cls(leaf_steps=leaf_steps, terms=terms, has_tiers=has_tiers)

    def cost(self, counts: dict[str, int], requests: int) -> Decimal:
        leaves: dict[str, int] = {}
        for usage_key, descendants in self.leaf_steps:
            value = counts.get(usage_key, 0)
            for descendant in descendants:
                value -= leaves[descendant]
            if value < 0:
                raise InvalidUsage(f"More specific token counts exceed {usage_key}.")
            leaves[usage_key] = value
        total_input = counts.get("input_tokens", 0) if self.has_tiers else 0
        total = Decimal(0)
        for usage_key, price, per in self.terms:
            # genai-prices always bills one request; we bill the requests reported.
            count = requests if usage_key == "requests" else leaves[usage_key]
            if not count:
                continue  # adding an exact zero changes no digit of the total
            if isinstance(price, gp.TieredPrices):
                applicable = price.base
                for tier in reversed(price.tiers):
                    if total_input > tier.start:
                        applicable = tier.price
                        break
                total += applicable * Decimal(count) / per
            else:
                total += price * Decimal(count) / per
        return total


@dataclass
class VersionEntry:
    """One ``PriceVersion`` row, with its prices compiled on first use."""

    version_id: int
    model_pk: int
    effective_from: dt.datetime
    effective_to: dt.datetime | None
    doc: dict[str, Any]
    _compiled: list[tuple[Any, CompiledPrice]] | None = field(default=None, repr=False)
    _unpriceable: bool = False

    def covers(self, at: dt.datetime) -> bool:
        return self.effective_from <= at and (self.effective_to is None or at < self.effective_to)

    def model_price_at(self, at: dt.datetime) -> gp.ModelPrice:
        """The source's price structure resolved for ``at`` (date / time-of-day conditions)."""
        from .source import model_info_from_json

        info = model_info_from_json({"id": "_", "match": {"equals": "_"}, **self.doc})
        return info.get_prices(at)

    def compiled_at(self, at: dt.datetime) -> CompiledPrice | None:
        if self._compiled is None and not self._unpriceable:
            self._compile()
        if self._compiled is None:
            return None
        entries = self._compiled
        # genai-prices: the last conditional price whose constraint holds wins, else the first.
        for constraint, compiled in reversed(entries):
            if constraint is None:
                return compiled
            if isinstance(constraint, dt.datetime):  # a start date, as a UTC instant
                if at >= constraint:
                    return compiled
            elif constraint.active(at):
                return compiled
        return entries[0][1]

    def _compile(self) -> None:
        from .source import model_info_from_json

        try:
            info = model_info_from_json({"id": "_", "match": {"equals": "_"}, **self.doc})
            if isinstance(info.prices, gp.ModelPrice):
                self._compiled = [(None, CompiledPrice.build(info.prices))]
            else:
                compiled: list[tuple[Any, CompiledPrice]] = []
                for conditional in info.prices:
                    constraint: Any = conditional.constraint
                    if isinstance(constraint, gp.StartDateConstraint):
                        # active(at) <=> at's UTC date >= start_date <=> at >= start_date 00:00 UTC
                        constraint = dt.datetime.combine(
                            constraint.start_date, dt.time(0), tzinfo=dt.UTC
                        )
                    compiled.append((constraint, CompiledPrice.build(conditional.prices)))
                self._compiled = compiled
        except (ValueError, TypeError):
            # A price genai-prices itself would refuse: treat as no price, never as zero.
            logger.warning("price version %s cannot be compiled", self.version_id, exc_info=True)
            self._unpriceable = True


@dataclass(frozen=True)
class Resolved:
    provider_id: str  # the provider as resolved (may differ from the model's owner on fallback)
    model_pk: int
    model_id: str
    owner_provider_id: str


class Catalog:
    """An immutable snapshot of the stored catalog, plus lookup memos."""

    def __init__(
        self,
        *,
        raw_providers: list[dict[str, Any]],
        model_pks: list[list[int]],
        owner_ids: dict[int, tuple[str, str]],
        versions: dict[int, list[VersionEntry]],
    ) -> None:
        from .source import providers_from_json

        providers = providers_from_json(raw_providers)
        self._snapshot = DataSnapshot(providers=providers, from_auto_update=False)
        # id(ModelInfo) -> our PriceModel pk; the objects live as long as the snapshot.
        self._model_pk_by_info: dict[int, int] = {}
        for provider, pks in zip(providers, model_pks, strict=True):
            for info, pk in zip(provider.models, pks, strict=True):
                self._model_pk_by_info[id(info)] = pk
        self._owner_ids = owner_ids
        self.versions = versions
        self._memo: dict[tuple[str | None, str], Resolved | None] = {}
        self._provider_memo: dict[str, str | None] = {}

    def resolve(self, provider: str | None, model: str) -> Resolved | None:
        """genai-prices' matching of (provider, model reference) -> our model row."""
        key = (provider, model)
        try:
            return self._memo[key]
        except KeyError:
            pass
        try:
            found_provider, info = self._snapshot.find_provider_model(model, None, provider, None)
        except LookupError:
            result = None
        else:
            pk = self._model_pk_by_info[id(info)]
            owner, model_id = self._owner_ids[pk]
            result = Resolved(
                provider_id=found_provider.id,
                model_pk=pk,
                model_id=model_id,
                owner_provider_id=owner,
            )
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = result
        return result

    def infer_provider(self, model: str) -> str | None:
        try:
            return self._provider_memo[model]
        except KeyError:
            pass
        try:
            provider_id: str | None = self._snapshot.find_provider(model, None, None).id
        except LookupError:
            provider_id = None
        if len(self._provider_memo) >= _MEMO_LIMIT:
            self._provider_memo.clear()
        self._provider_memo[model] = provider_id
        return provider_id

    def version_at(self, model_pk: int, at: dt.datetime) -> VersionEntry | None:
        for entry in reversed(self.versions.get(model_pk, ())):
            if entry.covers(at):
                return entry
        return None


def _load_catalog() -> Catalog:
    from .models import PriceModel, PriceProvider, PriceVersion

    if not PriceVersion.objects.exists():
        # A fresh database: load the configured source once (lazily, on first use).
        from .services import catalog_sync

        catalog_sync()
    providers = list(PriceProvider.objects.order_by("-is_listed", "position", "pk"))
    models_by_provider: dict[int, list[PriceModel]] = {p.pk: [] for p in providers}
    for model in PriceModel.objects.order_by("-is_listed", "position", "pk"):
        models_by_provider[model.provider_id].append(model)
    raw_providers: list[dict[str, Any]] = []
    model_pks: list[list[int]] = []
    owner_ids: dict[int, tuple[str, str]] = {}
    for provider in providers:
        models = models_by_provider[provider.pk]
        raw_providers.append(
            {
                "id": provider.provider_id,
                "name": provider.name,
                "api_pattern": provider.api_pattern or "^$",
                "model_match": provider.model_match if provider.is_listed else None,
                "provider_match": provider.provider_match,
                "fallback_model_providers": provider.fallback_model_providers or None,
                # Prices live in versions; matching only needs the rules.
                "models": [{"id": m.model_id, "match": m.match, "prices": {}} for m in models],
            }
        )
        model_pks.append([m.pk for m in models])
        for m in models:
            owner_ids[m.pk] = (provider.provider_id, m.model_id)
    versions: dict[int, list[VersionEntry]] = {}
    rows = PriceVersion.objects.order_by("model_id", "effective_from").values_list(
        "pk", "model_id", "effective_from", "effective_to", "prices"
    )
    for pk, model_pk, start, end, doc in rows.iterator(chunk_size=2000):
        versions.setdefault(model_pk, []).append(
            VersionEntry(
                version_id=pk, model_pk=model_pk, effective_from=start, effective_to=end, doc=doc
            )
        )
    return Catalog(
        raw_providers=raw_providers, model_pks=model_pks, owner_ids=owner_ids, versions=versions
    )


# --- Environment overrides ------------------------------------------------------------------


@dataclass(frozen=True)
class RateOverride:
    input_mtok: Decimal
    output_mtok: Decimal
    cache_read_mtok: Decimal
    cache_write_mtok: Decimal
    per_request_usd: Decimal | None

    def cost(
        self, *, uncached_input: int, cache_read: int, cache_write: int, output: int, requests: int
    ) -> Decimal:
        tokens = (
            self.input_mtok * uncached_input
            + self.cache_read_mtok * cache_read
            + self.cache_write_mtok * cache_write
            + self.output_mtok * output
        ) / 1_000_000
        if self.per_request_usd is not None:
            tokens += self.per_request_usd * requests
        return tokens


@dataclass(frozen=True)
class EnvOverrides:
    # keys are lower-case; provider "" on a model row means any provider
    rates: dict[tuple[str, str], RateOverride]
    model_discounts: dict[tuple[str, str], Decimal]
    provider_discounts: dict[str, Decimal]

    @property
    def empty(self) -> bool:
        return not (self.rates or self.model_discounts or self.provider_discounts)

    def rate_for(self, provider: str | None, names: Sequence[str]) -> RateOverride | None:
        for name in names:
            if provider and (found := self.rates.get((provider, name))):
                return found
            if found := self.rates.get(("", name)):
                return found
        return None

    def discount_for(self, provider: str | None, names: Sequence[str]) -> Decimal | None:
        for name in names:
            if provider and (found := self.model_discounts.get((provider, name))) is not None:
                return found
            if (found := self.model_discounts.get(("", name))) is not None:
                return found
        if provider:
            return self.provider_discounts.get(provider)
        return None


NO_OVERRIDES = EnvOverrides(rates={}, model_discounts={}, provider_discounts={})


def _load_overrides(environment_id: uuid.UUID) -> EnvOverrides:
    from .models import ModelPriceOverride

    rates: dict[tuple[str, str], RateOverride] = {}
    model_discounts: dict[tuple[str, str], Decimal] = {}
    provider_discounts: dict[str, Decimal] = {}
    for row in scoped(ModelPriceOverride, environment_id):
        if row.discount_percent is not None:
            if row.model:
                model_discounts[(row.provider, row.model)] = row.discount_percent
            else:
                provider_discounts[row.provider] = row.discount_percent
        elif row.input_mtok is not None and row.output_mtok is not None:
            rates[(row.provider, row.model)] = RateOverride(
                input_mtok=row.input_mtok,
                output_mtok=row.output_mtok,
                cache_read_mtok=row.cache_read_mtok
                if row.cache_read_mtok is not None
                else row.input_mtok,
                cache_write_mtok=row.cache_write_mtok
                if row.cache_write_mtok is not None
                else row.input_mtok,
                per_request_usd=row.per_request_usd,
            )
    if not (rates or model_discounts or provider_discounts):
        return NO_OVERRIDES
    return EnvOverrides(
        rates=rates, model_discounts=model_discounts, provider_discounts=provider_discounts
    )


# --- Stamps and the caches ---------------------------------------------------------------------


def _read_stamp(key: str) -> bytes | bool | None:
    """The stamp, None when absent, False when Redis cannot be reached."""
    try:
        value = get_redis().get(key)
        return value if isinstance(value, bytes) or value is None else str(value).encode()
    except redis.RedisError:
        logger.warning("pricing: cannot read %s; keeping cached prices", key)
        return False


def _bump(key: str) -> None:
    try:
        get_redis().set(key, uuid.uuid4().hex)
    except redis.RedisError:
        # Other processes catch up within the max age.
        logger.warning("pricing: cannot bump %s", key)


@dataclass
class _Cached[T]:
    value: T
    loaded_at: float
    checked_at: float
    stamp: bytes | None


_catalog_lock = threading.RLock()  # re-entrant: a lazy first sync runs under it
# The one catalog (key None), and each environment's overrides; fresh while their Redis
# stamps match (``_fresh``).
_catalog: LocalCache[None, _Cached[Catalog]] = LocalCache("pricing.catalog", max_entries=1)
_overrides: LocalCache[object, _Cached[EnvOverrides]] = LocalCache(
    "pricing.overrides", max_entries=10_000
)


def _fresh[T](entry: _Cached[T] | None, key: str, max_age: float, now: float) -> bool:
    """Whether ``entry`` may be used; checks the Redis stamp at most once per CHECK_SECONDS."""
    if entry is None or now - entry.loaded_at > max_age:
        return False
    if now - entry.checked_at < CHECK_SECONDS:
        return True
    stamp = _read_stamp(key)
    entry.checked_at = now
    if stamp is False or stamp is None:
        return True
    return stamp == entry.stamp


def get_catalog() -> Catalog:
    now = time.monotonic()
    entry = _catalog.get(None)
    if entry is not None and _fresh(entry, CATALOG_STAMP_KEY, CATALOG_MAX_AGE, now):
        return entry.value
    with _catalog_lock:
        entry = _catalog.get(None)
        if entry is not None and entry.loaded_at >= now:
            return entry.value  # another thread reloaded while we waited
        stamp = _read_stamp(CATALOG_STAMP_KEY)
        catalog = _load_catalog()
        loaded = time.monotonic()
        _catalog.set(
            None, _Cached(catalog, loaded, loaded, stamp if isinstance(stamp, bytes) else None)
        )
        return catalog


def get_overrides(environment_id: uuid.UUID) -> EnvOverrides:
    now = time.monotonic()
    entry = _overrides.get(environment_id)
    if entry is not None and now - entry.checked_at < CHECK_SECONDS:
        return entry.value  # the common case, kept free of any work
    key = overrides_stamp_key(environment_id)
    if entry is not None and _fresh(entry, key, OVERRIDES_MAX_AGE, now):
        return entry.value
    stamp = _read_stamp(key)
    value = _load_overrides(environment_id)
    loaded = time.monotonic()
    _overrides.set(
        environment_id, _Cached(value, loaded, loaded, stamp if isinstance(stamp, bytes) else None)
    )
    return value


def catalog_changed() -> None:
    """Call after the catalog changed (and again on commit): drop our copy, tell the others."""
    with _catalog_lock:
        _catalog.pop(None)
    _bump(CATALOG_STAMP_KEY)


def overrides_changed(environment_id: object) -> None:
    _overrides.pop(environment_id)
    _bump(overrides_stamp_key(environment_id))
