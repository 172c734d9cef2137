"""customerReferenceId / featureKey -> ids, with a short in-process cache in front.

The catalog services do the bulk get-or-create (two statements each). On the
single-event hot path those four statements would double the request's
database time, so ids seen recently are remembered per process. An id enters
the cache only after the transaction that produced it commits (a rolled-back
auto-create must not be remembered), and lives ``TTL_SECONDS``: a customer or
feature deleted meanwhile can be named by events for at most that long.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from django.db import transaction

from apps.customers.services import customers_ensure
from apps.features.services import features_ensure

if TYPE_CHECKING:
    from apps.accounts.models import Environment

TTL_SECONDS = 60.0
MAX_ENTRIES = 100_000

_cache: dict[tuple[str, uuid.UUID, str], tuple[uuid.UUID, float]] = {}


def clear_cache() -> None:
    _cache.clear()


def _remember(entries: dict[tuple[str, uuid.UUID, str], uuid.UUID]) -> None:
    if len(_cache) + len(entries) > MAX_ENTRIES:
        _cache.clear()
    expires = time.monotonic() + TTL_SECONDS
    for cache_key, value in entries.items():
        _cache[cache_key] = (value, expires)


def _resolve(kind: str, environment: Environment, names: set[str]) -> dict[str, uuid.UUID]:
    now = time.monotonic()
    found: dict[str, uuid.UUID] = {}
    missing: list[str] = []
    env_id = environment.pk
    for name in names:
        hit = _cache.get((kind, env_id, name))
        if hit is not None and hit[1] > now:
            found[name] = hit[0]
        else:
            missing.append(name)
    if missing:
        if kind == "c":
            fresh = customers_ensure(environment=environment, reference_ids=missing)
        else:
            fresh = features_ensure(environment=environment, keys=missing)
        found.update(fresh)
        entries = {(kind, env_id, name): value for name, value in fresh.items()}
        transaction.on_commit(lambda: _remember(entries))
    return found


def cached_ids(
    environment: Environment, customer_refs: set[str], feature_keys: set[str]
) -> tuple[dict[str, uuid.UUID], dict[str, uuid.UUID]] | None:
    """Like ``resolve_ids`` from the cache alone: None when any name is not cached.

    When it answers, ingestion has nothing to create, so storing the events is
    one statement that needs no transaction around it.
    """
    now = time.monotonic()
    env_id = environment.pk
    out: list[dict[str, uuid.UUID]] = []
    for kind, names in (("c", customer_refs), ("f", feature_keys)):
        found: dict[str, uuid.UUID] = {}
        for name in names:
            hit = _cache.get((kind, env_id, name))
            if hit is None or hit[1] <= now:
                return None
            found[name] = hit[0]
        out.append(found)
    return out[0], out[1]


def resolve_ids(
    *, environment: Environment, customer_refs: set[str], feature_keys: set[str]
) -> tuple[dict[str, uuid.UUID], dict[str, uuid.UUID]]:
    """``({reference_id: customer id}, {feature key: feature id})``, creating what is new.

    Call inside the ingestion transaction: auto-created rows commit or roll
    back with the events that named them.
    """
    customers = _resolve("c", environment, customer_refs)
    features = _resolve("f", environment, feature_keys)
    return customers, features
