"""Writing events: keys, events and every rollup in ONE statement (one round trip).

``store_events`` sends the rows as ONE jsonb parameter (an array of row
arrays, see ``COLUMNS``) and runs a single prepared SQL statement of
data-modifying CTEs:

1. ``INSERT INTO events_eventkey ... ON CONFLICT DO NOTHING RETURNING``: the
   exact duplicate check. A key held by a concurrent, uncommitted transaction
   makes this wait for it; if that one commits, the key is a duplicate here.
2. ``INSERT INTO events_event`` of the rows whose key was new, with the ids
   drawn for them in step 1.
3. The new events pre-aggregated once per (hour, customer, feature, model,
   provider; the API key is the statement's, one for all its rows), then three
   upserts ``ON CONFLICT DO UPDATE SET x = x + EXCLUDED.x``:
   ``events_hourlyrollup`` from that aggregate, and the daily
   ``events_dailycustomerrollup`` and ``events_dailyfeaturemodelrollup`` from it
   again (re-grouped by day), so every rollup moves in the same transaction as
   the events it sums. Each rollup row is written once per batch.

Deadlocks between concurrent batches (and re-costing, ``services.py``) are
avoided by taking row locks in one global order in every phase: keys sorted by
key, then the rollup tables in a fixed order (hourly, daily customer, daily
feature-model: each upsert waits for the previous one through a scalar
subquery), rows of each sorted by their primary key (customers and features
are sorted by the catalog services, called earlier in the same transaction).

Why jsonb and not column arrays: psycopg builds array literals in Python
(~65 us per 22-column event); ``json.dumps`` of the rows is C (~2 us), and
PostgreSQL's jsonb parser plus ``->>`` casts cost ~3 us per row. Amounts
travel as decimal strings and are cast to numeric: exact, never a float.

Why another cursor class: Django's cursors bind parameters client-side and
never prepare, so PostgreSQL would parse and plan this statement on every
call (~1.5 ms, most of a single-event request's database time).
``apps.core.db.prepared_cursor`` runs it on a server-side-binding cursor of the
same connection, which psycopg prepares after a few runs.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from apps.core.db import prepared_cursor

from .models import NO_API_KEY

# A row is a list in this order; JSON-ready values: str for text, ISO 8601 for
# the timestamp, str for uuids, decimal strings for amounts (never floats),
# int or None for counts, and the meta object's exact JSON text.
COLUMNS = (
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
    ("meta", "jsonb"),
)
_NAMES = [name for name, _ in COLUMNS]

MEASURES = (
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
    "estimated_cost_usd",
    "revenue_count",
    "duration_ms_sum",
    "duration_count",
)

# Primary keys, in the order their rows are locked (ingestion and re-costing alike).
HOURLY_KEY = "environment_id, bucket_start, customer_id, feature_id, model, provider, api_key_id"
DAILY_CUSTOMER_KEY = "environment_id, bucket_start, customer_id"
DAILY_FEATURE_KEY = "environment_id, bucket_start, feature_id, model, provider"


def _add(table: str, names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"{name} = {table}.{name} + EXCLUDED.{name}" for name in names)


def _extract(index: int, kind: str) -> str:
    if kind == "jsonb":
        return f"(r->>{index})::jsonb"
    if kind == "text":
        return f"r->>{index}"
    return f"(r->>{index})::{kind}"


_SUMS = ", ".join(f"sum({m})" for m in MEASURES)

# Built once from the constant lists above; every value is a bound parameter.
STORE_SQL = f"""
WITH input AS MATERIALIZED (
    SELECT nextval('events_event_id_seq') AS id,
           {", ".join(f"{_extract(i, kind)} AS {name}" for i, (name, kind) in enumerate(COLUMNS))}
      FROM jsonb_array_elements(%(rows)s::jsonb) AS r
),
new_keys AS (
    INSERT INTO events_eventkey (environment_id, idempotency_key, event_id, occurred_at)
    SELECT %(env)s::uuid, idempotency_key, id, occurred_at
      FROM input
     ORDER BY idempotency_key
    ON CONFLICT (environment_id, idempotency_key) DO NOTHING
    RETURNING idempotency_key, event_id
),
new_events AS (
    INSERT INTO events_event
        (id, environment_id, received_at, flags, api_key_id, {", ".join(_NAMES)})
    SELECT id, %(env)s::uuid, %(received)s::timestamptz, '{{}}'::jsonb, %(key)s::uuid,
           {", ".join(_NAMES)}
      FROM input
     WHERE id IN (SELECT event_id FROM new_keys)
    RETURNING occurred_at, customer_id, feature_id, model, provider, usage_units,
              input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
              reasoning_tokens, cost_usd, cost_source, revenue_usd, duration_ms
),
hourly AS MATERIALIZED (
    SELECT date_trunc('hour', occurred_at, 'UTC') AS bucket_start, customer_id, feature_id,
           model, provider,
           count(*) AS event_count, sum(usage_units) AS usage_units,
           coalesce(sum(input_tokens), 0) AS input_tokens,
           coalesce(sum(output_tokens), 0) AS output_tokens,
           coalesce(sum(cache_read_tokens), 0) AS cache_read_tokens,
           coalesce(sum(cache_write_tokens), 0) AS cache_write_tokens,
           coalesce(sum(reasoning_tokens), 0) AS reasoning_tokens,
           coalesce(sum(cost_usd), 0) AS cost_usd,
           coalesce(sum(revenue_usd), 0) AS revenue_usd,
           count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_count,
           coalesce(sum(cost_usd) FILTER (WHERE cost_source = 'estimated'), 0)
               AS estimated_cost_usd,
           count(revenue_usd) AS revenue_count,
           coalesce(sum(duration_ms), 0) AS duration_ms_sum,
           count(duration_ms) AS duration_count
      FROM new_events
     GROUP BY 1, 2, 3, 4, 5
),
hourly_up AS (
    INSERT INTO events_hourlyrollup ({HOURLY_KEY}, {", ".join(MEASURES)})
    SELECT %(env)s::uuid, bucket_start, customer_id, feature_id, model, provider,
           coalesce(%(key)s::uuid, '{NO_API_KEY}'::uuid), {", ".join(MEASURES)}
      FROM hourly
     ORDER BY bucket_start, customer_id, feature_id, model, provider
    ON CONFLICT ({HOURLY_KEY}) DO UPDATE SET {_add("events_hourlyrollup", MEASURES)}
    RETURNING 1
),
daily_customer_up AS (
    INSERT INTO events_dailycustomerrollup
        ({DAILY_CUSTOMER_KEY}, last_bucket_start, {", ".join(MEASURES)})
    SELECT %(env)s::uuid, date_trunc('day', bucket_start, 'UTC'), customer_id,
           max(bucket_start), {_SUMS}
      FROM hourly
     WHERE (SELECT count(*) FROM hourly_up) >= 0
     GROUP BY 2, 3
     ORDER BY 2, 3
    ON CONFLICT ({DAILY_CUSTOMER_KEY}) DO UPDATE SET
        last_bucket_start = greatest(events_dailycustomerrollup.last_bucket_start,
                                     EXCLUDED.last_bucket_start),
        {_add("events_dailycustomerrollup", MEASURES)}
    RETURNING 1
),
daily_feature_up AS (
    INSERT INTO events_dailyfeaturemodelrollup
        ({DAILY_FEATURE_KEY}, last_bucket_start, {", ".join(MEASURES)})
    SELECT %(env)s::uuid, date_trunc('day', bucket_start, 'UTC'), feature_id, model, provider,
           max(bucket_start), {_SUMS}
      FROM hourly
     WHERE (SELECT count(*) FROM daily_customer_up) >= 0
     GROUP BY 2, 3, 4, 5
     ORDER BY 2, 3, 4, 5
    ON CONFLICT ({DAILY_FEATURE_KEY}) DO UPDATE SET
        last_bucket_start = greatest(events_dailyfeaturemodelrollup.last_bucket_start,
                                     EXCLUDED.last_bucket_start),
        {_add("events_dailyfeaturemodelrollup", MEASURES)}
)
SELECT idempotency_key, event_id FROM new_keys
"""  # noqa: S608
# PostgreSQL's own placeholders: psycopg's RawCursor sends the text as is (its
# %-placeholder parsing costs ~150 us per call on a statement this long, which
# is past the size psycopg caches the parsing for).
STORE_SQL = STORE_SQL.replace("%(env)s", "$1").replace("%(received)s", "$2")
STORE_SQL = STORE_SQL.replace("%(rows)s", "$3").replace("%(key)s", "$4")


def encode_rows(rows: list[list[Any]]) -> str:
    """The jsonb parameter: the rows (lists in ``COLUMNS`` order) as one JSON array."""
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


def store_events(
    *,
    environment_id: uuid.UUID,
    rows: list[list[Any]],
    received_at: dt.datetime,
    api_key_id: uuid.UUID | None,
) -> dict[str, int]:
    """Store the rows whose key is new: ``{idempotency_key: event id}`` of those stored.

    ``rows`` are lists in ``COLUMNS`` order with distinct idempotency keys. Run
    inside a transaction (the caller's), after resolving customers and
    features in it. ``api_key_id``: the key that wrote every one of the rows (None:
    no key did; the hourly rollup then counts them under ``NO_API_KEY``). It is one
    parameter, not a column of each row: a request has one key.
    """
    if not rows:
        return {}
    params = (environment_id, received_at, encode_rows(rows), api_key_id)
    with prepared_cursor() as cur:
        cur.execute(STORE_SQL, params)
        return dict(cur.fetchall())
