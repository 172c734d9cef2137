"""Writing events: keys, events and rollups in ONE statement (one round trip).

``store_events`` sends the rows as column arrays and runs a single SQL
statement of three data-modifying CTEs:

1. ``INSERT INTO events_eventkey ... ON CONFLICT DO NOTHING RETURNING``: the
   exact duplicate check. A key held by a concurrent, uncommitted transaction
   makes this wait for it; if that one commits, the key is a duplicate here.
2. ``INSERT INTO events_event`` of the rows whose key was new, with the ids
   drawn for them in step 1.
3. ``INSERT INTO events_hourlyrollup ... ON CONFLICT DO UPDATE SET x = x +
   EXCLUDED.x`` of the new events grouped by hour bucket, so rollups move in
   the same transaction as the events they sum.

Deadlocks between concurrent batches are avoided by taking row locks in one
global order in every phase: keys sorted by key, rollup buckets sorted by
their primary key (and customers/features sorted by the catalog services,
called earlier in the same transaction).

Amounts are numeric end to end (Decimal in, numeric in SQL): no float.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection


@dataclass(slots=True)
class EventRow:
    """One event ready to store; amounts USD (12 dp), durations ms."""

    idempotency_key: str
    event_name: str
    occurred_at: dt.datetime
    customer_id: uuid.UUID
    feature_id: uuid.UUID
    model: str
    provider: str
    usage_units: Decimal
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    cache_write_tokens: int | None
    reasoning_tokens: int | None
    cost_usd: Decimal | None
    cost_source: str
    unpriced_reason: str
    price_version_id: int | None
    revenue_usd: Decimal | None
    revenue_source: str
    duration_ms: int | None
    trace_id: str
    meta_json: str


_COLUMNS = (
    ("idempotency_key", "text"),
    ("event_name", "text"),
    ("occurred_at", "timestamptz"),
    ("customer_id", "uuid"),
    ("feature_id", "uuid"),
    ("model", "text"),
    ("provider", "text"),
    ("usage_units", "numeric"),
    ("input_tokens", "bigint"),
    ("output_tokens", "bigint"),
    ("cache_read_tokens", "bigint"),
    ("cache_write_tokens", "bigint"),
    ("reasoning_tokens", "bigint"),
    ("cost_usd", "numeric"),
    ("cost_source", "text"),
    ("unpriced_reason", "text"),
    ("price_version_id", "bigint"),
    ("revenue_usd", "numeric"),
    ("revenue_source", "text"),
    ("duration_ms", "integer"),
    ("trace_id", "text"),
    ("meta_json", "jsonb"),
)
_NAMES = [name for name, _ in _COLUMNS]
_EVENT_COLUMNS = [("meta" if name == "meta_json" else name) for name in _NAMES]

_ROLLUP_SUMS = (
    "event_count",
    "usage_units",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
    "revenue_usd",
    "unpriced_count",
    "revenue_count",
    "duration_ms_sum",
    "duration_count",
)
ROLLUP_KEY = "environment_id, bucket_start, customer_id, feature_id, model, provider"

# Built once from the constant column lists above; every value is a bound parameter.
STORE_SQL = f"""
WITH input AS (
    SELECT * FROM unnest({", ".join(f"%(c{i})s::{kind}[]" for i, (_, kind) in enumerate(_COLUMNS))})
        AS t({", ".join(_NAMES)})
),
new_keys AS (
    INSERT INTO events_eventkey (environment_id, idempotency_key, event_id, occurred_at)
    SELECT %(env)s, i.idempotency_key, nextval('events_event_id_seq'), i.occurred_at
      FROM input i
     ORDER BY i.idempotency_key
    ON CONFLICT (environment_id, idempotency_key) DO NOTHING
    RETURNING idempotency_key, event_id
),
new_events AS (
    INSERT INTO events_event
        (id, environment_id, received_at, flags, {", ".join(_EVENT_COLUMNS)})
    SELECT k.event_id, %(env)s, %(received)s, '{{}}'::jsonb, {", ".join(f"i.{n}" for n in _NAMES)}
      FROM new_keys k JOIN input i USING (idempotency_key)
    RETURNING occurred_at, customer_id, feature_id, model, provider, usage_units,
              input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
              reasoning_tokens, cost_usd, revenue_usd, duration_ms
),
rollups AS (
    INSERT INTO events_hourlyrollup ({ROLLUP_KEY}, {", ".join(_ROLLUP_SUMS)})
    SELECT %(env)s, date_trunc('hour', occurred_at, 'UTC'), customer_id, feature_id,
           model, provider,
           count(*), sum(usage_units),
           coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
           coalesce(sum(cache_read_tokens), 0), coalesce(sum(cache_write_tokens), 0),
           coalesce(sum(reasoning_tokens), 0),
           coalesce(sum(cost_usd), 0), coalesce(sum(revenue_usd), 0),
           count(*) FILTER (WHERE cost_usd IS NULL), count(revenue_usd),
           coalesce(sum(duration_ms), 0), count(duration_ms)
      FROM new_events
     GROUP BY 2, 3, 4, 5, 6
     ORDER BY 2, 3, 4, 5, 6
    ON CONFLICT ({ROLLUP_KEY}) DO UPDATE SET
        {", ".join(f"{c} = events_hourlyrollup.{c} + EXCLUDED.{c}" for c in _ROLLUP_SUMS)}
)
SELECT idempotency_key, event_id FROM new_keys
"""  # noqa: S608


def store_events(
    *, environment_id: uuid.UUID, rows: list[EventRow], received_at: dt.datetime
) -> dict[str, int]:
    """Store the rows whose key is new: ``{idempotency_key: event id}`` of those stored.

    ``rows`` must have distinct idempotency keys. Run inside a transaction
    (the caller's), after resolving customers and features in it.
    """
    if not rows:
        return {}
    params: dict[str, object] = {"env": environment_id, "received": received_at}
    for index, name in enumerate(_NAMES):
        params[f"c{index}"] = [getattr(row, name) for row in rows]
    with connection.cursor() as cur:
        cur.execute(STORE_SQL, params)
        return dict(cur.fetchall())
