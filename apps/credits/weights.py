"""Weight resolution for deductions, from an in-process cache of each environment's weights.

A deduction needs "credits per unit of this feature (and model) at this
instant". Weights are few per environment and change rarely, so each process
holds all of an environment's weights and resolves in memory, like
``apps.pricing.catalog`` does for prices:

* the copy is dropped when the environment's Redis stamp changes (checked at
  most once per ``CHECK_SECONDS``), and in any case after ``MAX_AGE`` seconds;
  the process that publishes drops its own copy at once;
* weights are only published for instants at least ``MIN_LEAD`` ahead of the
  publish, and ``MIN_LEAD`` exceeds ``MAX_AGE``: a copy loaded at ``t`` is
  therefore complete for every instant before ``t + MIN_LEAD``, even if the
  stamp signal was lost (Redis down). For a later instant (an event dated in the
  future) the weight is read from the database instead.

Resolution: the weight for (feature, model) in force at the instant beats the
feature-wide weight in force at the instant; with neither, one credit per unit
(``WeightMatch.NONE``).
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

import redis

from apps.core.memo import LocalCache
from apps.core.redis import env_key, get_redis
from apps.core.tenancy import scoped

from .models import CreditWeight, WeightMatch

logger = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
MAX_AGE = 30.0
# Publishing needs this much notice; must exceed MAX_AGE (see the module docstring).
MIN_LEAD = dt.timedelta(seconds=60)
DEFAULT_WEIGHT = Decimal(1)


def stamp_key(environment_id: object) -> str:
    return env_key(environment_id, "credits", "weights-stamp")


@dataclass(frozen=True)
class WeightQuote:
    credits_per_unit: Decimal
    weight_id: uuid.UUID | None
    match: str  # a WeightMatch value


NO_WEIGHT = WeightQuote(DEFAULT_WEIGHT, None, WeightMatch.NONE)


class EnvWeights:
    """One environment's weights: per (feature_id, model), instants ascending."""

    def __init__(self, rows: list[tuple[uuid.UUID, str, dt.datetime, uuid.UUID, Decimal]]) -> None:
        series: dict[tuple[uuid.UUID, str], list[tuple[dt.datetime, uuid.UUID, Decimal]]] = {}
        for feature_id, model, effective_from, weight_id, credits_per_unit in rows:
            series.setdefault((feature_id, model), []).append(
                (effective_from, weight_id, credits_per_unit)
            )
        self._series = {key: sorted(values) for key, values in series.items()}
        self._instants = {
            key: [entry[0] for entry in values] for key, values in self._series.items()
        }

    def _in_force(self, key: tuple[uuid.UUID, str], at: dt.datetime) -> WeightQuote | None:
        instants = self._instants.get(key)
        if not instants:
            return None
        index = bisect.bisect_right(instants, at) - 1
        if index < 0:
            return None
        _, weight_id, credits_per_unit = self._series[key][index]
        return WeightQuote(credits_per_unit, weight_id, "")

    def quote(self, feature_id: uuid.UUID, model: str, at: dt.datetime) -> WeightQuote:
        if model:
            found = self._in_force((feature_id, model), at)
            if found is not None:
                return WeightQuote(found.credits_per_unit, found.weight_id, WeightMatch.MODEL)
        found = self._in_force((feature_id, ""), at)
        if found is not None:
            return WeightQuote(found.credits_per_unit, found.weight_id, WeightMatch.FEATURE_DEFAULT)
        return NO_WEIGHT


def _load(environment_id: uuid.UUID, feature_id: uuid.UUID | None = None) -> EnvWeights:
    rows = scoped(CreditWeight, environment_id)
    if feature_id is not None:
        rows = rows.filter(feature_id=feature_id)
    return EnvWeights(
        list(rows.values_list("feature_id", "model", "effective_from", "id", "credits_per_unit"))
    )


@dataclass
class _Entry:
    value: EnvWeights
    loaded_at: float  # monotonic
    checked_at: float  # monotonic
    complete_until: dt.datetime  # wall clock: loaded + MIN_LEAD
    stamp: bytes | None


# Environment id -> its weights; fresh while the Redis stamp matches (``_usable``).
_entries: LocalCache[object, _Entry] = LocalCache("credits.weights", max_entries=10_000)
_lock = threading.Lock()


def _read_stamp(key: str) -> bytes | bool | None:
    """The stamp, None when absent, False when Redis cannot be reached."""
    try:
        value = get_redis().get(key)
        return value if isinstance(value, bytes) or value is None else str(value).encode()
    except redis.RedisError:
        logger.warning("credits: cannot read %s; keeping cached weights", key)
        return False


def _usable(entry: _Entry, key: str, now: float) -> bool:
    if now - entry.loaded_at > MAX_AGE:
        return False
    if now - entry.checked_at < CHECK_SECONDS:
        return True
    stamp = _read_stamp(key)
    entry.checked_at = now
    if stamp is False or stamp is None:
        return True
    return stamp == entry.stamp


def env_weights(environment_id: uuid.UUID) -> tuple[EnvWeights, dt.datetime]:
    """The environment's weights, and the instant up to which they are known complete."""
    now = time.monotonic()
    key = stamp_key(environment_id)
    entry = _entries.get(environment_id)
    if entry is not None and _usable(entry, key, now):
        return entry.value, entry.complete_until
    with _lock:
        stamp = _read_stamp(key)
        wall = dt.datetime.now(dt.UTC)
        value = _load(environment_id)
        loaded = time.monotonic()
        entry = _Entry(
            value, loaded, loaded, wall + MIN_LEAD, stamp if isinstance(stamp, bytes) else None
        )
        _entries.set(environment_id, entry)
        return entry.value, entry.complete_until


def weight_for(
    environment_id: uuid.UUID, feature_id: uuid.UUID, model: str, at: dt.datetime
) -> WeightQuote:
    """The weight in force at ``at`` for the feature and model (no query when cached)."""
    weights, complete_until = env_weights(environment_id)
    if at >= complete_until:
        # An instant beyond what the cached copy can vouch for: ask the database.
        weights = _load(environment_id, feature_id)
    return weights.quote(feature_id, model, at)


def weights_changed(environment_id: object) -> None:
    """Call after publishing or withdrawing (and again on commit): drop ours, tell the others."""
    _entries.pop(environment_id)
    try:
        get_redis().set(stamp_key(environment_id), uuid.uuid4().hex)
    except redis.RedisError:
        logger.warning("credits: cannot bump the weights stamp of %s", environment_id)
