"""Aggregate tables (customers, features, models): grouping, sorting and paging in SQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import QuerySet

from apps.analytics.params import TableQuery, Window
from apps.events.selectors import (
    last_seen_sql,
)
from apps.events.usage import Grain

from .totals import (
    Totals,
    _dicts,
    _rows,
)

if TYPE_CHECKING:
    from apps.accounts.models import Environment


# --- Aggregate tables (customers, features, models) ------------------------------------

# API sort names -> annotations of the aggregate row.
TABLE_SORTS: dict[str, str] = {
    "cost": "cost",
    "revenue": "revenue",
    "margin": "margin",
    "marginPct": "margin_pct",
    "events": "events",
    "unpricedEvents": "unpriced",
    "lastSeen": "last_seen",
}
SORTS: tuple[str, ...] = tuple(TABLE_SORTS)


def _sorts_by_last_seen(query: TableQuery) -> bool:
    return query.sort.lstrip("-") == "lastSeen"


def _page(
    rows: QuerySet[Any] | _GroupedRows, query: TableQuery, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    page = list(rows[query.offset : query.offset + limit + 1])
    return page[:limit], len(page) > limit


@dataclass(slots=True)
class ModelSlice:
    model: str
    provider: str
    totals: Totals


def _chunks(rows: QuerySet[Any] | _GroupedRows, size: int) -> Iterator[list[dict[str, Any]]]:
    """A grouped query read through a server-side cursor, ``size`` rows at a time."""
    chunk: list[dict[str, Any]] = []
    for row in rows.iterator(chunk_size=size):
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _GroupedRows:
    """A grouped SQL query read like a sliced or iterated values() QuerySet."""

    def __init__(self, sql: str, params: list[Any]) -> None:
        self.sql, self.params = sql, params

    def __getitem__(self, page: slice) -> list[dict[str, Any]]:
        start = page.start or 0
        with connection.cursor() as cursor:
            cursor.execute(
                f"{self.sql} LIMIT %s OFFSET %s", [*self.params, page.stop - start, start]
            )
            return _dicts(cursor)

    def iterator(self, chunk_size: int) -> Iterator[dict[str, Any]]:
        with connection.chunked_cursor() as cursor:
            cursor.execute(self.sql, self.params)
            columns = [col.name for col in cursor.description]
            while rows := cursor.fetchmany(chunk_size):
                for row in rows:
                    yield dict(zip(columns, row, strict=True))


# The grain of each table's key column.
_KEY_GRAINS = {"customer_id": Grain.CUSTOMER, "feature_id": Grain.FEATURE}


def _grouped_select(
    environment: Environment,
    window: Window,
    *,
    key: str,
    search: QuerySet[Any] | None = None,
    last_seen: bool = False,
    extra: dict[uuid.UUID, Decimal] | None = None,
) -> tuple[str, list[Any]]:
    """SQL (unordered) and parameters of the sums per ``key`` (``customer_id`` or
    ``feature_id``) over the window's ledger rows (see :func:`_rows`); ``search``: a
    values("id") queryset the key must be in; ``last_seen``: add the probe of raw events;
    ``extra``: revenue per key beside the events' (rows of revenue alone, so a key that
    has only such revenue is a group too, and the sorts see it)."""
    rollups, params = _rows(environment, window, (_KEY_GRAINS[key],), last_bucket=True)
    if extra:
        # Columns in _rows' order: the key, then _MEASURES (events, cost, revenue, unpriced,
        # usage units, estimated cost), then the last bucket.
        rollups += """
            UNION ALL
            SELECT x.key, 0::bigint, 0::numeric, x.revenue, 0::bigint, 0::numeric, 0::numeric,
                   NULL::timestamptz
              FROM unnest(%s::uuid[], %s::numeric[]) AS x(key, revenue)
        """
        params = [*params, list(extra), list(extra.values())]
    probe = where = ""
    if last_seen:
        probe_sql, probe_params = last_seen_sql(
            environment, window.start, window.end, **{key: f"r.{key}"}
        )
        probe = f",\n            {probe_sql} AS last_seen"
        params = [*probe_params, *params]
    if search is not None:
        search_sql, search_params = search.query.sql_with_params()
        where = f"WHERE r.{key} IN ({search_sql})"
        params.extend(search_params)
    revenue, cost = "COALESCE(SUM(r.revenue_usd), 0)", "COALESCE(SUM(r.cost_usd), 0)"
    sql = f"""
        SELECT r.{key},
               COALESCE(SUM(r.event_count), 0)::bigint AS events,
               {cost} AS cost,
               {revenue} AS revenue,
               COALESCE(SUM(r.unpriced_count), 0)::bigint AS unpriced,
               COALESCE(SUM(r.usage_units), 0) AS usage_units,
               MAX(r.last_bucket) AS last_bucket,
               ({revenue} - {cost}) AS margin,
               ((({revenue} - {cost}) * 100) / NULLIF({revenue}, 0)) AS margin_pct{probe}
          FROM ({rollups}) r
          {where}
         GROUP BY 1
    """  # noqa: S608 - names are ours, values bound
    return sql, params


def _sort_sql(sort: str, key: str) -> str:
    """The table's total order: the sort (NULLs last either way), then the key."""
    direction = "DESC" if sort.startswith("-") else "ASC"
    return f"{TABLE_SORTS[sort.lstrip('-')]} {direction} NULLS LAST, {key} ASC"


def _table_grouped(
    environment: Environment,
    query: TableQuery,
    *,
    key: str,
    search: QuerySet[Any] | None,
    extra: dict[uuid.UUID, Decimal],
) -> _GroupedRows:
    """Sums per ``key`` over the window's rollups, in the query's total order."""
    sql, params = _grouped_select(
        environment,
        query.window,
        key=key,
        search=search,
        last_seen=_sorts_by_last_seen(query),
        extra=extra,
    )
    return _GroupedRows(f"{sql} ORDER BY {_sort_sql(query.sort, '1')}", params)


def _tops(
    environment: Environment,
    window: Window,
    *,
    key: str,
    sorts: Sequence[str],
    limit: int,
    extra: dict[uuid.UUID, Decimal],
) -> tuple[int, int, dict[str, list[dict[str, Any]]]]:
    """The first ``limit`` grouped rows under each of ``sorts`` (as the table's first page
    under that sort would list them), the number of groups and of those with events in
    the window: one GROUP BY for all."""
    if not sorts or any(sort.lstrip("-") == "lastSeen" for sort in sorts):
        raise ValueError("tops take one or more sorts other than lastSeen")
    sql, params = _grouped_select(environment, window, key=key, extra=extra)
    ranks = ", ".join(
        f"row_number() OVER (ORDER BY {_sort_sql(sort, key)}) AS rank_{n}"
        for n, sort in enumerate(sorts)
    )
    kept = " OR ".join(f"rank_{n} <= %s" for n in range(len(sorts)))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT * FROM (
                SELECT g.*, count(*) OVER () AS groups,
                       count(*) FILTER (WHERE events > 0) OVER () AS active_groups, {ranks}
                  FROM ({sql}) g
            ) t
             WHERE {kept}
            """,  # noqa: S608 - names are ours, values bound
            [*params, *([limit] * len(sorts))],
        )
        rows = _dicts(cursor)
    groups, active = (rows[0]["groups"], rows[0]["active_groups"]) if rows else (0, 0)
    tops = {
        sort: sorted(
            (row for row in rows if row[f"rank_{n}"] <= limit), key=lambda r: r[f"rank_{n}"]
        )
        for n, sort in enumerate(sorts)
    }
    for row in rows:
        del row["groups"], row["active_groups"]
        for n in range(len(sorts)):
            del row[f"rank_{n}"]
    return groups, active, tops


@dataclass(slots=True)
class Tops:
    """The first rows of a table under a few sorts, how many rows the table has, and how
    many of them have events in the window (the others: revenue beside the events')."""

    count: int
    rows: dict[str, list[Any]]
    active: int = 0
