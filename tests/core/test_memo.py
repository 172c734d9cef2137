"""The per-process cache helper (apps.core.memo): expiry, bounds, and one clear for all."""

from __future__ import annotations

import time

import apps.apikeys.services
import apps.entitlements.state
import apps.events.resolve  # noqa: F401  (their caches register at import)
from apps.core import memo
from apps.core.memo import LocalCache


def test_entries_expire_and_stale_ones_stay_readable_for_who_asks():
    cache: LocalCache[str, int] = LocalCache("test.expiry", ttl=60)
    cache.set("a", 1)
    cache.set("b", 2, ttl=-1)  # expired a second ago
    assert cache.get("a") == 1
    assert cache.get("b") is None and cache.get("missing") is None
    stale = cache.entry("b")
    assert stale is not None and stale[0] == 2 and stale[1] < time.monotonic()


def test_bounded_the_oldest_entry_goes_first():
    cache: LocalCache[int, int] = LocalCache("test.bound", max_entries=3)
    cache.set_many({1: 1, 2: 2, 3: 3})
    cache.set(1, 10)  # rewritten: now the newest
    cache.set(4, 4)
    assert len(cache) == 3
    assert cache.get(2) is None  # the oldest went
    assert [cache.get(k) for k in (1, 3, 4)] == [10, 3, 4]
    assert list(cache) == [3, 1, 4]


def test_without_ttl_entries_stay_until_dropped():
    cache: LocalCache[str, str] = LocalCache("test.forever")
    cache.set("k", "v")
    assert cache.get("k") == "v"
    cache.pop("k")
    cache.pop("never there")
    assert cache.get("k") is None


def test_clear_all_forgets_every_registered_cache():
    first: LocalCache[str, int] = LocalCache("test.first")
    second: LocalCache[str, int] = LocalCache("test.second", ttl=30)
    first.set("x", 1)
    second.set("y", 2)
    names = {cache.name for cache in memo.caches()}
    # The application's own caches are registered at import, like these.
    assert {"apikeys.keys", "events.resolved_ids", "entitlements.state"} <= names
    assert {"test.first", "test.second"} <= names
    memo.clear_all()
    assert first.get("x") is None and second.get("y") is None
    assert len(first) == len(second) == 0
