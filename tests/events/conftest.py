"""Event fixtures: a small real price catalog, an events.write key, helpers to read the ledger."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.models import BigIntegerField, DecimalField, ExpressionWrapper, F, Sum, Value
from django.db.models.functions import Coalesce, NullIf

from apps.core import memo
from apps.pricing.services import catalog_sync

# A minimal catalog in genai-prices' published shape (USD per million tokens).
# gpt-4o: input 2.5, cached input 1.25, output 10 (genai-prices' own figures).
CATALOG = [
    {
        "id": "openai",
        "name": "OpenAI",
        "api_pattern": "https://api\\.openai\\.com",
        "model_match": {"starts_with": "gpt-"},
        "models": [
            {
                "id": "gpt-4o",
                "match": {"or": [{"equals": "gpt-4o"}, {"equals": "gpt-4o-2024-08-06"}]},
                "prices": {"input_mtok": "2.5", "cache_read_mtok": "1.25", "output_mtok": "10"},
            },
            {
                "id": "gpt-4o-mini",
                "match": {"equals": "gpt-4o-mini"},
                "prices": {"input_mtok": "0.15", "cache_read_mtok": "0.075", "output_mtok": "0.6"},
            },
        ],
    },
    {
        "id": "anthropic",
        "name": "Anthropic",
        "api_pattern": "https://api\\.anthropic\\.com",
        "model_match": {"contains": "claude"},
        "models": [
            {
                "id": "claude-sonnet-4",
                "match": {"starts_with": "claude-sonnet-4"},
                "prices": {
                    "input_mtok": "3",
                    "cache_write_mtok": "3.75",
                    "cache_read_mtok": "0.3",
                    "output_mtok": "15",
                },
            }
        ],
    },
]


@pytest.fixture(scope="session")
def catalog_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prices") / "prices.json"
    path.write_text(json.dumps(CATALOG))
    return path


@pytest.fixture(autouse=True)
def _fresh_process_caches() -> Iterator[None]:
    """Rows roll back between tests; the in-process caches must forget them too."""
    memo.clear_all()
    yield
    memo.clear_all()


@pytest.fixture
def catalog(db: Any, catalog_file: Path) -> None:
    """The small catalog above, loaded through the pricing service."""
    catalog_sync(source=str(catalog_file))
    memo.clear_all()


def db_rows(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cur:
        cur.execute(sql, params or [])
        return cur.fetchall()


def event_count(environment: Any = None) -> int:
    if environment is None:
        return db_rows("SELECT count(*) FROM events_event")[0][0]
    return db_rows("SELECT count(*) FROM events_event WHERE environment_id = %s", [environment.pk])[
        0
    ][0]


_FRESH_MEASURES = """
    count(*) AS event_count, sum(usage_units) AS usage_units,
    coalesce(sum(input_tokens), 0) AS input_tokens,
    coalesce(sum(output_tokens), 0) AS output_tokens,
    coalesce(sum(cache_read_tokens), 0) AS cache_read_tokens,
    coalesce(sum(cache_write_tokens), 0) AS cache_write_tokens,
    coalesce(sum(reasoning_tokens), 0) AS reasoning_tokens,
    coalesce(sum(cost_usd), 0) AS cost_usd,
    coalesce(sum(revenue_usd), 0) AS revenue_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_count,
    coalesce(sum(cost_usd) FILTER (WHERE cost_source = 'estimated'), 0) AS estimated_cost_usd,
    count(revenue_usd) AS revenue_count,
    coalesce(sum(duration_ms), 0) AS duration_ms_sum,
    count(duration_ms) AS duration_count
"""
_STORED_MEASURES = """
    event_count, usage_units, input_tokens, output_tokens, cache_read_tokens,
    cache_write_tokens, reasoning_tokens, cost_usd, revenue_usd, unpriced_count,
    estimated_cost_usd, revenue_count, duration_ms_sum, duration_count
"""
# table -> (its key as a fresh GROUP BY expression list, its key columns, extra columns)
_ROLLUPS = {
    "events_hourlyrollup": (
        "environment_id, date_trunc('hour', occurred_at, 'UTC'), customer_id, feature_id,"
        " model, provider, coalesce(api_key_id, '00000000-0000-0000-0000-000000000000')",
        "environment_id, bucket_start, customer_id, feature_id, model, provider, api_key_id",
        "",
    ),
    "events_dailycustomerrollup": (
        "environment_id, date_trunc('day', occurred_at, 'UTC'), customer_id",
        "environment_id, bucket_start, customer_id",
        "max(date_trunc('hour', occurred_at, 'UTC'))",
    ),
    "events_dailyfeaturemodelrollup": (
        "environment_id, date_trunc('day', occurred_at, 'UTC'), feature_id, model, provider",
        "environment_id, bucket_start, feature_id, model, provider",
        "max(date_trunc('hour', occurred_at, 'UTC'))",
    ),
}


def rollup_mismatches() -> list[tuple[Any, ...]]:
    """Rows where a rollup (hourly, daily customer, daily feature-model) differs from a
    fresh GROUP BY of the raw events (empty = all equal)."""
    out: list[tuple[Any, ...]] = []
    for table, (group, key, extra) in _ROLLUPS.items():
        n = len(key.split(","))
        fresh_extra = f", {extra}" if extra else ""
        stored_extra = ", last_bucket_start" if extra else ""
        rows = db_rows(
            f"""
            WITH fresh AS (
                SELECT {group}{fresh_extra}, {_FRESH_MEASURES}
                  FROM events_event
                 GROUP BY {", ".join(str(i + 1) for i in range(n))}
            ),
            stored AS (
                SELECT {key}{stored_extra}, {_STORED_MEASURES}
                  FROM {table}
                 WHERE event_count <> 0
            )
            (SELECT 'missing', * FROM fresh EXCEPT SELECT 'missing', * FROM stored)
            UNION ALL
            (SELECT 'extra', * FROM stored EXCEPT SELECT 'extra', * FROM fresh)
            """  # noqa: S608
        )
        out.extend((table, *row) for row in rows)
    return out


_SUM_FIELD = DecimalField(max_digits=38, decimal_places=12)


def reference_measures() -> dict[str, Any]:
    """The analytics sums as ORM aggregates over rollup rows (the reference reads)."""
    return {
        "events": Coalesce(Sum("event_count"), Value(0), output_field=BigIntegerField()),
        "cost": Coalesce(Sum("cost_usd"), Value(Decimal(0)), output_field=_SUM_FIELD),
        "revenue": Coalesce(Sum("revenue_usd"), Value(Decimal(0)), output_field=_SUM_FIELD),
        "unpriced": Coalesce(Sum("unpriced_count"), Value(0), output_field=BigIntegerField()),
        "usage_units": Coalesce(Sum("usage_units"), Value(Decimal(0)), output_field=_SUM_FIELD),
    }


def reference_derived() -> dict[str, Any]:
    """Margin and margin % as the analytics tables compute them in SQL."""
    return {
        "margin": ExpressionWrapper(F("revenue") - F("cost"), output_field=_SUM_FIELD),
        "margin_pct": ExpressionWrapper(
            (F("revenue") - F("cost"))
            * Value(Decimal(100))
            / NullIf(F("revenue"), Value(Decimal(0))),
            output_field=DecimalField(),
        ),
    }


def decimal_of(value: Any) -> Decimal:
    return Decimal(str(value))
