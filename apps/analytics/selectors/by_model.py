"""The models table (provider, model)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from apps.analytics.params import TableQuery, Window
from apps.events.selectors import (
    last_seen_sql,
    latency_percentiles,
)
from apps.events.usage import Grain, Measure

from .tables import (
    _chunks,
    _GroupedRows,
    _page,
    _sort_sql,
)
from .totals import (
    _MEASURES,
    Totals,
    _rows,
    window_extra,
)

if TYPE_CHECKING:
    from apps.accounts.models import Environment


@dataclass(slots=True)
class ModelRow:
    model: str
    provider: str
    totals: Totals
    customers: int
    features: int
    input_tokens: int
    output_tokens: int
    avg_duration_ms: Decimal | None
    last_bucket: dt.datetime
    last_seen: dt.datetime | None
    # p50, p95, p99 of durationMs over the window's events that carry one.
    latency_ms: tuple[float, float, float] | None = None


@dataclass(slots=True)
class ModelTable:
    rows: list[ModelRow]
    has_more: bool


def _like(text: str) -> str:
    """``%text%`` for ILIKE, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def models_grouped(environment: Environment, query: TableQuery) -> _GroupedRows:
    """Per (provider, model) sums over the window's hourly rows; events that named no
    model are not a model.

    A table of models is short (tens of rows), so every row carries its ``lastSeen``
    probe here, whatever the sort.
    """
    window = query.window
    rollups, params = _rows(
        environment,
        window,
        (Grain.CUSTOMER, Grain.FEATURE, Grain.MODEL),
        measures=(
            *_MEASURES,
            Measure.INPUT_TOKENS,
            Measure.OUTPUT_TOKENS,
            Measure.DURATION_MS_SUM,
            Measure.DURATION_COUNT,
        ),
        last_bucket=True,
    )
    where = "r.model <> ''"
    if query.search:
        where += " AND (r.model ILIKE %s OR r.provider = %s)"
        params = [*params, _like(query.search), query.search]
    revenue = "COALESCE(SUM(r.revenue_usd), 0)"
    extra = window_extra(environment, window).by_model()
    extra_params: list[Any] = []
    if extra:
        # Revenue beside the events' per (provider, model): a lookup in bound arrays.
        revenue += """ + COALESCE((SELECT x.amount
              FROM unnest(%s::text[], %s::text[], %s::numeric[]) AS x(provider, model, amount)
             WHERE x.provider = r.provider AND x.model = r.model), 0)"""
        keys = list(extra)
        extra_params = [[k[0] for k in keys], [k[1] for k in keys], list(extra.values())]
    probe, probe_params = last_seen_sql(
        environment, window.start, window.end, model="r.model", provider="r.provider"
    )
    cost = "COALESCE(SUM(r.cost_usd), 0)"
    # One level of GROUP BY: the probe runs once per (provider, model) group, never per row.
    sql = f"""
        SELECT r.provider, r.model,
               COALESCE(SUM(r.event_count), 0)::bigint AS events,
               {cost} AS cost,
               {revenue} AS revenue,
               COALESCE(SUM(r.unpriced_count), 0)::bigint AS unpriced,
               COALESCE(SUM(r.usage_units), 0) AS usage_units,
               MAX(r.last_bucket) AS last_bucket,
               count(DISTINCT r.customer_id) AS customers,
               count(DISTINCT r.feature_id) AS features,
               COALESCE(SUM(r.input_tokens), 0)::bigint AS input_tokens,
               COALESCE(SUM(r.output_tokens), 0)::bigint AS output_tokens,
               COALESCE(SUM(r.duration_ms_sum), 0)::bigint AS duration_sum,
               COALESCE(SUM(r.duration_count), 0)::bigint AS duration_count,
               ({revenue} - {cost}) AS margin,
               ((({revenue} - {cost}) * 100) / NULLIF({revenue}, 0)) AS margin_pct,
               {probe} AS last_seen
          FROM ({rollups}) r
         WHERE {where}
         GROUP BY 1, 2
         ORDER BY {_sort_sql(query.sort, "provider ASC, model")}
    """  # noqa: S608 - names are ours, values bound
    # Parameters in the order of their placeholders: the revenue expression's (four
    # times), the probe's, the rows', the search's.
    return _GroupedRows(sql, [*(extra_params * 4), *probe_params, *params])


def model_rows(
    environment: Environment, window: Window, grouped: list[dict[str, Any]]
) -> list[ModelRow]:
    """Rows with latency percentiles: one query over the raw events of these models.

    The ``(environment, model, occurred_at)`` index and the window bound the scan.
    """
    rows = [
        ModelRow(
            model=row["model"],
            provider=row["provider"],
            totals=Totals.of(row),
            customers=row["customers"],
            features=row["features"],
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            avg_duration_ms=(
                (Decimal(row["duration_sum"]) / row["duration_count"]).quantize(Decimal("0.1"))
                if row["duration_count"]
                else None
            ),
            last_bucket=row["last_bucket"],
            last_seen=row["last_seen"],
        )
        for row in grouped
    ]
    timed = {(row.provider, row.model): row for row in rows if row.avg_duration_ms is not None}
    if timed:
        latencies = latency_percentiles(
            environment, window.start, window.end, {model for _, model in timed}
        )
        for pair, latency in latencies.items():
            row = timed.get(pair)
            if row is not None:
                row.latency_ms = latency
    return rows


def model_table(environment: Environment, query: TableQuery, *, limit: int) -> ModelTable:
    """One page of (provider, model) groups: rollup sums, then latency percentiles."""
    page, has_more = _page(models_grouped(environment, query), query, limit)
    return ModelTable(rows=model_rows(environment, query.window, page), has_more=has_more)


def model_table_all(
    environment: Environment, query: TableQuery, *, chunk: int = 200
) -> Iterator[ModelRow]:
    for grouped in _chunks(models_grouped(environment, query), chunk):
        yield from model_rows(environment, query.window, grouped)
