"""Per-process caches: one kind, one registry, one :func:`clear_all`.

Every value a process keeps between requests (API keys, resolved customer and
feature ids, the price catalog, credit weights, plan state, ...) lives in a
:class:`LocalCache` created at import time of the module that owns it. Each is
bounded (``max_entries``; the oldest entry goes first when full) and its entries
may expire (``ttl`` seconds, per cache or per entry). Freshness rules that need
more than a clock (the Redis stamps of the catalog, weights and plan state) stay
with their owners, which store their entries here.

:func:`caches` lists them all (docs/scaling.md describes each); :func:`clear_all`
forgets everything this process holds (the test suite calls it around every
test, an operator's restore may too).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Mapping

_registry: dict[str, LocalCache[object, object]] = {}
_registry_lock = threading.Lock()


class LocalCache[K, V]:
    """A bounded map of this process with optional expiry.

    Reads take no lock (a dict lookup and a clock read: this sits on the hottest
    paths); writes do. ``get`` answers None for a missing or expired entry, so
    values must not be None.
    """

    __slots__ = ("_data", "_lock", "max_entries", "name", "ttl")

    def __init__(self, name: str, *, ttl: float | None = None, max_entries: int = 10_000) -> None:
        self.name = name
        self.ttl = ttl
        self.max_entries = max_entries
        self._data: dict[K, tuple[V, float]] = {}
        self._lock = threading.Lock()
        with _registry_lock:
            # One per name: a module imported again (a reload) replaces its caches.
            _registry[name] = self  # type: ignore[assignment]

    def get(self, key: K) -> V | None:
        """The value, or None when absent or expired."""
        hit = self._data.get(key)
        if hit is None or hit[1] <= time.monotonic():
            return None
        return hit[0]

    def entry(self, key: K) -> tuple[V, float] | None:
        """``(value, expires_at)`` even when expired (``time.monotonic()`` scale; ``inf``
        without expiry), or None: for a caller that may still use a stale value."""
        return self._data.get(key)

    def set(self, key: K, value: V, *, ttl: float | None = None) -> None:
        """Store ``value``; ``ttl`` overrides the cache's (None: the cache's)."""
        self.set_many({key: value}, ttl=ttl)

    def set_many(self, items: Mapping[K, V], *, ttl: float | None = None) -> None:
        seconds = self.ttl if ttl is None else ttl
        expires = math.inf if seconds is None else time.monotonic() + seconds
        with self._lock:
            data = self._data
            for key, value in items.items():
                data.pop(key, None)  # re-inserted last: the newest
                data[key] = (value, expires)
            while len(data) > self.max_entries:
                del data[next(iter(data))]

    def pop(self, key: K) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __iter__(self) -> Iterator[K]:
        """The keys held now (expired ones included), oldest first; a snapshot."""
        with self._lock:
            return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"<LocalCache {self.name} ({len(self._data)}/{self.max_entries})>"


def caches() -> Iterator[LocalCache[object, object]]:
    """Every per-process cache, in the order their modules were imported."""
    with _registry_lock:
        found = list(_registry.values())
    yield from found


def clear_all() -> None:
    """Forget everything every per-process cache holds."""
    for cache in caches():
        cache.clear()
