"""Analytics reads over 1M and 10M stored events.

Seeding is direct SQL, not HTTP (10M events through the API would take the
whole run): ``INSERT ... SELECT`` over ``generate_series`` writes the events
and their keys (one statement per million), then every rollup is computed
from the events with the same GROUP BY ingestion maintains incrementally, so
the database looks exactly as if the events had been ingested. The shape:
2,000 customers (a few heavy ones, a long tail), 20 features, 8 models of 4
providers (one unknown to the catalog: unpriced), 90 days up to now, token
counts, catalog-like costs, revenue on 30% of events, durations.

The event table's secondary indexes are dropped while seeding and rebuilt
after (a sorted index build is many times faster than 10M index inserts);
the bench database is private to the run.

Then ``GET /api/analytics/overview`` (default window: the last 30 days) and
``GET /api/customers`` (first page, default sort) are timed through the web server (granian).
The "raw ceiling" is PostgreSQL alone running the very SQL statements the
view ran (captured from Django), back to back on one connection: what the
request costs minus HTTP, Django, DRF and rendering.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from . import harness
from .harness import Row, log, percentile

CUSTOMERS = 2000
FEATURES = 20
DAYS = 90
CHUNK = 1_000_000
# (provider, model, share, USD per million input tokens, per million output tokens)
MODELS = [
    ("openai", "gpt-4o", 0.28, "2.5", "10"),
    ("openai", "gpt-4o-mini", 0.22, "0.15", "0.6"),
    ("openai", "o3-mini", 0.06, "1.1", "4.4"),
    ("anthropic", "claude-sonnet-4-20250514", 0.14, "3", "15"),
    ("anthropic", "claude-3-5-haiku-latest", 0.10, "0.8", "4"),
    ("google", "gemini-2.5-flash", 0.10, "0.3", "2.5"),
    ("google", "gemini-2.5-pro", 0.07, "1.25", "10"),
    ("acme", "acme-internal-llm-v2", 0.03, None, None),  # unknown: unpriced
]
PATHS = ("/api/analytics/overview", "/api/customers")

_state: dict[str, Any] = {}

SEED_SQL = """
WITH s AS (
    SELECT g, random() AS r_cust, random() AS r_feat, random() AS r_model, random() AS r_in,
           random() AS r_out, random() AS r_at, random() AS r_rev, random() AS r_dur
      FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g
),
e AS (
    SELECT s.*, width_bucket(r_model, %(bounds)s::float8[]) AS m,
           200 + floor(r_in * r_in * 12000)::bigint AS input_tokens,
           20 + floor(r_out * 1500)::bigint AS output_tokens
      FROM s
),
ins AS (
    INSERT INTO events_event (
        id, environment_id, idempotency_key, event_name, occurred_at, received_at,
        customer_id, feature_id, model, provider, usage_units, input_tokens, output_tokens,
        cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_usd, cost_source,
        unpriced_reason, price_version_id, revenue_usd, revenue_source, duration_ms,
        trace_id, meta, flags)
    SELECT nextval('events_event_id_seq'), %(env)s::uuid, 'seed-' || g,
           (ARRAY['chat', 'embed', 'api_call'])[1 + g %% 3],
           %(now)s::timestamptz - r_at * %(days)s * interval '1 day',
           %(now)s::timestamptz - r_at * %(days)s * interval '1 day',
           (%(customers)s::uuid[])[1 + floor(r_cust * r_cust * r_cust * %(ncust)s)::int],
           (%(features)s::uuid[])[1 + floor(r_feat * r_feat * %(nfeat)s)::int],
           (%(models)s::text[])[m], (%(providers)s::text[])[m], 1,
           input_tokens, output_tokens, NULL, NULL, NULL,
           CASE WHEN (%(in_prices)s::numeric[])[m] IS NULL THEN NULL
                ELSE round((input_tokens * (%(in_prices)s::numeric[])[m]
                            + output_tokens * (%(out_prices)s::numeric[])[m]) / 1000000, 12)
           END,
           CASE WHEN (%(in_prices)s::numeric[])[m] IS NULL THEN 'unpriced' ELSE 'catalog' END,
           CASE WHEN (%(in_prices)s::numeric[])[m] IS NULL THEN 'unknown_model' ELSE '' END,
           NULL,
           CASE WHEN r_rev < 0.3 THEN round((r_rev * 1.5)::numeric, 3) END,
           CASE WHEN r_rev < 0.3 THEN 'explicit' ELSE '' END,
           150 + floor(r_dur * 9000)::int, '', '{}'::jsonb, '{}'::jsonb
      FROM e
    RETURNING environment_id, idempotency_key, id, occurred_at
)
INSERT INTO events_eventkey (environment_id, idempotency_key, event_id, occurred_at)
SELECT * FROM ins
"""

_MEASURES = """
    count(*), sum(usage_units), coalesce(sum(input_tokens), 0),
    coalesce(sum(output_tokens), 0), coalesce(sum(cache_read_tokens), 0),
    coalesce(sum(cache_write_tokens), 0), coalesce(sum(reasoning_tokens), 0),
    coalesce(sum(cost_usd), 0), coalesce(sum(revenue_usd), 0),
    count(*) FILTER (WHERE cost_usd IS NULL), count(revenue_usd),
    coalesce(sum(duration_ms), 0), count(duration_ms)
"""
_MEASURE_COLUMNS = (
    "event_count, usage_units, input_tokens, output_tokens, cache_read_tokens,"
    " cache_write_tokens, reasoning_tokens, cost_usd, revenue_usd, unpriced_count,"
    " revenue_count, duration_ms_sum, duration_count"
)
_SUM_MEASURES = ", ".join(f"sum({c.strip()})" for c in _MEASURE_COLUMNS.split(","))

# The rollups from scratch, as ingestion would have left them (same GROUP BY).
ROLLUP_SQL = [
    "DELETE FROM events_hourlyrollup WHERE environment_id = %(env)s",
    "DELETE FROM events_dailycustomerrollup WHERE environment_id = %(env)s",
    "DELETE FROM events_dailyfeaturemodelrollup WHERE environment_id = %(env)s",
    f"""
    INSERT INTO events_hourlyrollup (environment_id, bucket_start, customer_id, feature_id,
                                     model, provider, {_MEASURE_COLUMNS})
    SELECT environment_id, date_trunc('hour', occurred_at, 'UTC'), customer_id, feature_id,
           model, provider, {_MEASURES}
      FROM events_event WHERE environment_id = %(env)s
     GROUP BY 1, 2, 3, 4, 5, 6
    """,  # noqa: S608
    f"""
    INSERT INTO events_dailycustomerrollup (environment_id, bucket_start, customer_id,
                                            last_bucket_start, {_MEASURE_COLUMNS})
    SELECT environment_id, date_trunc('day', bucket_start, 'UTC'), customer_id,
           max(bucket_start), {_SUM_MEASURES}
      FROM events_hourlyrollup WHERE environment_id = %(env)s
     GROUP BY 1, 2, 3
    """,  # noqa: S608
    f"""
    INSERT INTO events_dailyfeaturemodelrollup (environment_id, bucket_start, feature_id,
                                                model, provider, last_bucket_start,
                                                {_MEASURE_COLUMNS})
    SELECT environment_id, date_trunc('day', bucket_start, 'UTC'), feature_id, model,
           provider, max(bucket_start), {_SUM_MEASURES}
      FROM events_hourlyrollup WHERE environment_id = %(env)s
     GROUP BY 1, 2, 3, 4, 5
    """,  # noqa: S608
]


def _connect() -> Any:
    import psycopg

    return psycopg.connect(harness.bench_database_url(), autocommit=True)


def _catalog(env_id: str) -> tuple[list[str], list[str]]:
    """2,000 customers and 20 features, created as ingestion would (the ensure services)."""
    from django.db import connections

    from apps.accounts.models import Environment
    from apps.customers.services import customers_ensure
    from apps.features.services import features_ensure

    env = Environment.objects.get(pk=env_id)
    customers = customers_ensure(
        environment=env, reference_ids=[f"cus_{n:04d}" for n in range(CUSTOMERS)]
    )
    features = features_ensure(environment=env, keys=[f"feature_{n:02d}" for n in range(FEATURES)])
    connections.close_all()
    return [str(customers[f"cus_{n:04d}"]) for n in range(CUSTOMERS)], [
        str(features[f"feature_{n:02d}"]) for n in range(FEATURES)
    ]


def _partitions(now: dt.datetime) -> None:
    from django.db import connections

    from apps.core.months import add_months
    from apps.events.partitions import create_month_partition, month_floor

    month = month_floor(now - dt.timedelta(days=DAYS + 1))
    while month <= month_floor(now):
        create_month_partition(month)
        month = add_months(month, 1)
    connections.close_all()


def seed(env_id: str, total: int) -> float:
    """Bring the environment to ``total`` seeded events; seconds spent."""
    start = time.perf_counter()
    have = _state.setdefault("seeded", 0)
    if have >= total:
        return 0.0
    now = _state.setdefault("now", dt.datetime.now(dt.UTC).replace(microsecond=0))
    if "customers" not in _state:
        _partitions(now)
        _state["customers"], _state["features"] = _catalog(env_id)
    shares = [m[2] for m in MODELS]
    bounds = [float(sum(shares[:n])) for n in range(len(MODELS))]  # 0, s1, s1+s2, ...
    params = {
        "env": env_id,
        "now": now,
        "days": DAYS,
        "customers": _state["customers"],
        "features": _state["features"],
        "ncust": CUSTOMERS,
        "nfeat": FEATURES,
        "bounds": bounds,
        "models": [m[1] for m in MODELS],
        "providers": [m[0] for m in MODELS],
        "in_prices": [m[3] for m in MODELS],
        "out_prices": [m[4] for m in MODELS],
    }
    with _connect() as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute("SET work_mem = '64MB'")
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            " AND tablename = 'events_event' AND indexname <> 'events_event_pkey'"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.execute("SELECT setseed(0.42)")
        lo = have + 1
        while lo <= total:
            hi = min(total, lo + CHUNK - 1)
            t = time.perf_counter()
            conn.execute(SEED_SQL, {**params, "lo": lo, "hi": hi})
            log(f"  events {lo:,}..{hi:,} in {time.perf_counter() - t:.0f} s")
            lo = hi + 1
        t = time.perf_counter()
        for _, definition in indexes:
            # pg_indexes shows a partitioned index as "ON ONLY parent" (no partitions).
            conn.execute(definition.replace(" ON ONLY ", " ON "))
        log(f"  {len(indexes)} event indexes rebuilt in {time.perf_counter() - t:.0f} s")
        t = time.perf_counter()
        for statement in ROLLUP_SQL:
            conn.execute(statement, {"env": env_id})
        log(f"  rollups computed in {time.perf_counter() - t:.0f} s")
        t = time.perf_counter()
        for table in (
            "events_event",
            "events_eventkey",
            "events_hourlyrollup",
            "events_dailycustomerrollup",
            "events_dailyfeaturemodelrollup",
        ):
            conn.execute(f"VACUUM ANALYZE {table}")
        # Write the seed's dirty pages out now, not while reads are timed.
        conn.execute("CHECKPOINT")
        log(f"  vacuum analyze and checkpoint in {time.perf_counter() - t:.0f} s")
        counts = conn.execute(
            """
            SELECT (SELECT count(*) FROM events_hourlyrollup WHERE environment_id = %(env)s),
                   (SELECT count(*) FROM events_dailycustomerrollup WHERE environment_id = %(env)s),
                   (SELECT count(*) FROM events_dailyfeaturemodelrollup
                     WHERE environment_id = %(env)s)
            """,
            {"env": env_id},
        ).fetchone()
        log(
            f"  rollup rows: hourly {counts[0]:,}, daily customer {counts[1]:,},"
            f" daily feature-model {counts[2]:,}"
        )
    _state["seeded"] = total
    return time.perf_counter() - start


def _captured_sql(key: str, path: str) -> list[str]:
    """The SQL statements the view runs for ``path`` (in process, same database)."""
    from django.db import connection, connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    client.get(path)  # warm the key cache: capture only the view's own reads
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} -> {response.status_code}: {response.content[:300]!r}")
    connections.close_all()
    return [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"].lstrip().upper().startswith(("SELECT", "WITH"))
    ]


def _sql_latency(statements: list[str], runs: int) -> list[float]:
    out = []
    with _connect() as conn:
        for _ in range(2):
            for sql in statements:
                conn.execute(sql).fetchall()
        for _ in range(runs):
            t = time.perf_counter()
            for sql in statements:
                conn.execute(sql).fetchall()
            out.append(time.perf_counter() - t)
    return sorted(out)


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.0f}"


def seeded_tenant() -> tuple[str, str]:
    """The seeded environment and a key: a fresh one, or with ``BENCH_REUSE=1`` the one a
    previous run left seeded in the bench database (its events kept: no re-seeding)."""
    if "tenant" in _state:
        return _state["tenant"]
    if harness.REUSE:
        from django.db import connection, connections

        from apps.accounts.audit import Actor
        from apps.accounts.models import Environment
        from apps.apikeys.services import apikey_create

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT environment_id, sum(event_count) FROM events_dailycustomerrollup"
                " GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
            )
            found = cursor.fetchone()
        if found is not None:
            env = Environment.objects.get(pk=found[0])
            key = apikey_create(environment=env, kind="sk", actor=Actor.system()).plaintext
            connections.close_all()
            _state["seeded"] = int(found[1])
            _state["tenant"] = str(env.pk), key
            log(f"reusing {int(found[1]):,} seeded events")
            return _state["tenant"]
    _state["tenant"] = harness.tenant()
    return _state["tenant"]


def bench_reads(rows: list[Row], scale: int, workers: int = 2, requests: int = 200) -> None:
    from .load import read_latency

    env_id, key = seeded_tenant()
    seconds = seed(env_id, scale)
    if seconds:
        log(f"seeded {scale:,} events in {seconds:.0f} s")
    label = f"{scale / 1e6:g}M events"
    for path in PATHS:
        statements = _captured_sql(key, path)
        with harness.server(workers=workers) as port:
            read_latency(port, key, path, clients=workers, per_client=10)  # warm
            http = read_latency(port, key, path, clients=2, per_client=requests // 2)
        sql = _sql_latency(statements, runs=max(20, requests // 4))
        p99 = percentile(http, 0.99) * 1000
        rows.append(
            Row(
                f"GET {path} over {label}, 2 clients",
                f"p50 {_ms(http, 0.5)} ms, p99 {p99:.0f} ms",
                f"p50 {_ms(sql, 0.5)} ms, p99 {_ms(sql, 0.99)} ms"
                f" (its {len(statements)} SQL statements alone)",
                f"{percentile(sql, 0.5) / percentile(http, 0.5):.2f}",
                "p99 <= 250 ms" if scale >= 10_000_000 else "",
                ("met" if p99 <= 250 else "MISSED") if scale >= 10_000_000 else "",
            )
        )
