"""Row-free locks per (customer, feature) and per (customer, credit denomination).

PostgreSQL transaction-level advisory locks: held until the transaction ends,
released by commit or rollback, no table rows involved. Ingestion takes the
(customer, feature) lock of every event of a Platform environment before it
reads usage (for plan revenue, caps and the Redis counters, see counters.py); a
reservation takes it, and the pool lock when the feature is credit-backed,
before it reads usage, holds and balance. One statement takes all of a
request's locks in ascending key order, so two requests never wait on each
other in a cycle; every other lock is taken after these, in this order: credit
pool rows (in id order, before the store, see ingestion.py), then the store's
event keys and rollup rows.

Keys are 64-bit hashes: two pairs sharing a key only ever wait for each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.db import connection

from apps.core.db import prepared_cursor

# Prepared (``apps.core.db``): PostgreSQL's own placeholder.
_LOCK_SQL = (
    "SELECT count(pg_advisory_xact_lock(k)) FROM"
    " (SELECT DISTINCT k FROM unnest($1::bigint[]) AS k ORDER BY k) AS keys"
)


def _key(*parts: object) -> int:
    digest = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def usage_key(environment_id: object, customer_id: object, feature_id: object) -> int:
    return _key("ent-usage", environment_id, customer_id, feature_id)


def pool_key(environment_id: object, customer_id: object, denomination: str) -> int:
    return _key("ent-pool", environment_id, customer_id, denomination)


def lock(keys: Iterable[int]) -> None:
    """Take the locks (inside a transaction), in ascending order, waiting as needed."""
    ordered = sorted(set(keys))
    if not ordered:
        return
    if not connection.in_atomic_block:
        raise RuntimeError("advisory locks need a transaction")
    with prepared_cursor() as cur:
        cur.execute(_LOCK_SQL, [ordered])
