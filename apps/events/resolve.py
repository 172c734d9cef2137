"""customerReferenceId / featureKey -> ids, with a short in-process cache in front.

The catalog services do the bulk get-or-create (two statements each). On the
single-event hot path those four statements would double the request's
database time, so ids seen recently are remembered per process. An id enters
the cache only after the transaction that produced it commits (a rolled-back
auto-create must not be remembered), and lives ``TTL_SECONDS``: a customer or
feature deleted meanwhile can be named by events for at most that long.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from django.db import transaction

from apps.core.memo import LocalCache
from apps.customers.services import customers_ensure
from apps.features.services import features_ensure

if TYPE_CHECKING:
    from apps.accounts.models import Environment

TTL_SECONDS = 60.0
MAX_ENTRIES = 100_000

# (kind "c" or "f", environment id, reference id or feature key) -> id
_cache: LocalCache[tuple[str, uuid.UUID, str], uuid.UUID] = LocalCache(
    "events.resolved_ids", ttl=TTL_SECONDS, max_entries=MAX_ENTRIES
)


def _remember(entries: dict[tuple[str, uuid.UUID, str], uuid.UUID]) -> None:
    _cache.set_many(entries)


def _resolve(kind: str, environment: Environment, names: set[str]) -> dict[str, uuid.UUID]:
    found: dict[str, uuid.UUID] = {}
    missing: list[str] = []
    env_id = environment.pk
    for name in names:
        hit = _cache.get((kind, env_id, name))
        if hit is not None:
            found[name] = hit
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
    env_id = environment.pk
    out: list[dict[str, uuid.UUID]] = []
    for kind, names in (("c", customer_refs), ("f", feature_keys)):
        found: dict[str, uuid.UUID] = {}
        for name in names:
            hit = _cache.get((kind, env_id, name))
            if hit is None:
                return None
            found[name] = hit
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
