"""The raw PostgreSQL ceiling for ingestion, measured in the same run: COPY each
batch of the same rows into a staging table, then INSERT ... ON CONFLICT DO NOTHING
into a table with the same unique key (environment, idempotency key), with the
same batch size and the same number of concurrent connections as the HTTP run."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import time
import uuid
from typing import Any

DDL = """
DROP TABLE IF EXISTS bench_ceiling;
CREATE TABLE bench_ceiling (
    environment_id uuid NOT NULL,
    idempotency_key varchar(255) NOT NULL,
    event_name varchar(255) NOT NULL,
    occurred_at timestamptz NOT NULL,
    customer varchar(255) NOT NULL,
    feature varchar(128) NOT NULL,
    model varchar(255) NOT NULL,
    provider varchar(64) NOT NULL,
    input_tokens bigint,
    output_tokens bigint,
    cache_read_tokens bigint,
    duration_ms integer,
    revenue_usd numeric(24, 12),
    PRIMARY KEY (environment_id, idempotency_key)
)
"""

STAGING = "CREATE TEMP TABLE IF NOT EXISTS staging (LIKE bench_ceiling) ON COMMIT DELETE ROWS"
COLUMNS = (
    "environment_id",
    "idempotency_key",
    "event_name",
    "occurred_at",
    "customer",
    "feature",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "duration_ms",
    "revenue_usd",
)

COPY_SQL = f"COPY staging ({', '.join(COLUMNS)}) FROM STDIN"


def _rows(env: uuid.UUID, batch: list[dict[str, Any]]) -> list[tuple]:
    return [
        (
            env,
            e["idempotencyKey"],
            e["eventName"],
            dt.datetime.fromisoformat(e["occurredAt"]),
            e["customerReferenceId"],
            e["featureKey"],
            e["model"],
            e["modelProvider"],
            e["inputTokens"],
            e["outputTokens"],
            e.get("cacheReadTokens"),
            e.get("durationMs"),
            e.get("revenueAmount"),
        )
        for e in batch
    ]


def _copy_batches(args: tuple[str, list[list[tuple]]]) -> int:
    import psycopg

    url, batches = args
    stored = 0
    with psycopg.connect(url) as conn:
        for rows in batches:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(STAGING)
                with cur.copy(COPY_SQL) as copy:
                    for row in rows:
                        copy.write_row(row)
                cur.execute(
                    "INSERT INTO bench_ceiling SELECT * FROM staging ON CONFLICT DO NOTHING"
                )
                stored += cur.rowcount
    return stored


def copy_ceiling(url: str, per_client: list[list[list[dict[str, Any]]]]) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in DDL.split(";"):
            if statement.strip():
                conn.execute(statement)
    env = uuid.uuid4()
    work = [(url, [_rows(env, batch) for batch in batches]) for batches in per_client]
    total = sum(len(batch) for batches in per_client for batch in batches)
    start = time.perf_counter()
    with mp.get_context("fork").Pool(len(work)) as pool:
        stored = sum(pool.map(_copy_batches, work))
    wall = time.perf_counter() - start
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE bench_ceiling")
    return {"events_per_s": total / wall, "stored": stored, "seconds": wall}
