"""Sums of the ledger over a window: grouped, filtered, exact (see the package docstring)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any

from django.db import connection

from .sql import (
    Segment,
    Source,
    daily_source,
    filter_sql,
    key_columns,
    measure_column,
    segment_rows_sql,
    split,
    sum_of,
)
from .types import (
    EXACT_DIGITS,
    NO_FILTER,
    ZERO,
    Grain,
    Measure,
    Measures,
    UsageFilter,
    UsageKey,
    UsageRow,
)

if TYPE_CHECKING:
    from apps.accounts.models import Environment

ALL_MEASURES: tuple[Measure, ...] = tuple(Measure)


def _check_grains(group_by: Sequence[Grain]) -> tuple[Grain, ...]:
    grains = tuple(Grain(grain) for grain in group_by)
    if len(set(grains)) != len(grains):
        raise ValueError(f"a grain is repeated in {group_by!r}")
    return grains


def _key_names(group_by: Sequence[Grain]) -> list[str]:
    return [name for grain in group_by for name in grain.key_fields]


def rows_sql(
    environment_id: Any,
    *,
    start: dt.datetime,
    end: dt.datetime,
    group_by: Sequence[Grain] = (),
    measures: Sequence[Measure] = ALL_MEASURES,
    filters: UsageFilter = NO_FILTER,
    last_bucket: bool = False,
) -> tuple[str, list[Any]]:
    """SQL and parameters of the window's ledger rows, not yet summed: a ``UNION ALL`` of
    the segments (daily, hourly, raw) with the columns named as the grains' key fields
    (``customer_id``, ``feature_id``, ``model``, ``provider``, ``day``, ``hour``), the
    measures and, with ``last_bucket``, the latest hour a row covers.

    For reads that sum, sort and page in SQL themselves (the analytics tables):
    ``SELECT ... FROM (<this>) r GROUP BY ...``. Rows of several segments may share a
    key: always group.
    """
    group_by = _check_grains(group_by)
    segments = split(start, end, daily=daily_source(group_by, filters))
    if not segments:
        # An empty range of the hourly rollup: no rows, with the columns' types.
        segments = [Segment(Source.HOURLY, start, start)]
    parts, params = [], []
    for segment in segments:
        sql, part_params = segment_rows_sql(
            segment,
            environment_id,
            group_by=group_by,
            measures=measures,
            filters=filters,
            last_bucket=last_bucket,
        )
        parts.append(sql)
        params.extend(part_params)
    return " UNION ALL ".join(parts), params


def _summed_sql(
    environment_id: Any,
    start: dt.datetime,
    end: dt.datetime,
    group_by: tuple[Grain, ...],
    filters: UsageFilter,
) -> tuple[str, list[Any]]:
    rows, params = rows_sql(
        environment_id, start=start, end=end, group_by=group_by, filters=filters
    )
    keys = _key_names(group_by)
    sums = ", ".join(f"{sum_of(m, m.value)} AS {m.value}" for m in ALL_MEASURES)
    select = ", ".join([*keys, sums])
    sql = f"SELECT {select} FROM ({rows}) r"  # noqa: S608 - names are ours
    if keys:
        order = ", ".join(str(n + 1) for n in range(len(keys)))
        sql += f" GROUP BY {order} ORDER BY {order}"
    return sql, params


def usage(
    environment: Environment,
    *,
    start: dt.datetime,
    end: dt.datetime,
    group_by: Sequence[Grain] = (),
    filters: UsageFilter = NO_FILTER,
) -> list[UsageRow]:
    """The environment's sums over ``[start, end)`` per group of ``group_by``, in key
    order; groups without events are absent. One statement."""
    grains = _check_grains(group_by)
    sql, params = _summed_sql(environment.pk, start, end, grains, filters)
    names = _key_names(grains)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        columns = [col.name for col in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    if not names:
        return [UsageRow(UsageKey(), Measures.of(rows[0]))]
    return [
        UsageRow(UsageKey(**{name: row[name] for name in names}), Measures.of(row)) for row in rows
    ]


def usage_totals(
    environment: Environment,
    *,
    start: dt.datetime,
    end: dt.datetime,
    filters: UsageFilter = NO_FILTER,
) -> Measures:
    """Every sum of the environment's events in ``[start, end)`` that pass ``filters``."""
    return usage(environment, start=start, end=end, filters=filters)[0].measures


# --- Many windows at once (billing periods) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerWindow:
    """One customer's ``[start, end)``; ``key`` names it in the answer."""

    key: Any
    customer_id: uuid.UUID
    start: dt.datetime
    end: dt.datetime


# Amounts per group of one window: {UsageKey: {measure: Decimal}}.
WindowSums = dict[UsageKey, dict[Measure, Decimal]]

CHUNK = 2000

_RANGE_JOIN = """
SELECT w.idx AS idx{keys}{measures}
  FROM unnest(%s::int[], %s::uuid[], %s::timestamptz[], %s::timestamptz[])
       AS w(idx, customer_id, lo, hi)
  JOIN {table} t
    ON t.environment_id = %s AND t.customer_id = w.customer_id
   AND t.{time} >= w.lo AND t.{time} < w.hi{where}
"""


def customer_window_sums(
    environment_id: Any,
    windows: Sequence[CustomerWindow],
    *,
    group_by: Sequence[Grain] = (Grain.FEATURE,),
    measures: Sequence[Measure] = (Measure.USAGE_UNITS,),
    feature_ids: Iterable[uuid.UUID] | None = None,
) -> dict[Any, WindowSums]:
    """Sums of ``measures`` of each customer window per group, exact at the edges:
    ``{window.key: {UsageKey: {measure: sum}}}`` (amounts as ``Decimal``, token and event
    counts as ``int``).

    Many windows cost one statement per ``CHUNK`` of them whatever their periods: the
    windows are bound as arrays and joined to the hourly rollup (whole hours) and the
    events (edges) through the ``(environment, customer, time)`` indexes. Windows with
    the same key add up. ``feature_ids``: only these features (None: all).
    """
    grains = _check_grains(group_by)
    if not measures:
        raise ValueError("name at least one measure to sum")
    measures = [Measure(m) for m in measures]
    if Grain.CUSTOMER in grains:
        raise ValueError("each window is one customer's; group by something else")
    out: dict[Any, WindowSums] = {window.key: {} for window in windows}
    features = None if feature_ids is None else sorted({uuid.UUID(str(f)) for f in feature_ids})
    if features is not None and not features:
        return out
    hourly: list[tuple[int, uuid.UUID, dt.datetime, dt.datetime]] = []
    raw: list[tuple[int, uuid.UUID, dt.datetime, dt.datetime]] = []
    for index, window in enumerate(windows):
        for segment in split(window.start, window.end, daily=None):
            rows = raw if segment.source is Source.EVENTS else hourly
            rows.append((index, window.customer_id, segment.start, segment.end))
    names = _key_names(grains)
    filters = UsageFilter(feature_ids=features)
    parts: list[tuple[str, list[tuple], list[Any]]] = []
    for source, rows in ((Source.HOURLY, hourly), (Source.EVENTS, raw)):
        keys = "".join(
            f", {sql} AS {name}"
            for grain in grains
            for sql, name in zip(key_columns(grain, source, "t"), grain.key_fields, strict=True)
        )
        sums = "".join(f", {measure_column(m, source, 't')} AS {m.value}" for m in measures)
        where, where_params = filter_sql(filters, source, "t")
        sql = _RANGE_JOIN.format(
            keys=keys, measures=sums, table=source.table, time=source.time_column, where=where
        )
        parts.append((sql, rows, [environment_id, *where_params]))
    group = ", ".join(["idx", *names])
    totals = ", ".join(sum_of(m, m.value) for m in measures)
    for offset in range(0, len(windows), CHUNK):
        selects, params = [], []
        for sql, rows, extra in parts:
            chunk = [row for row in rows if offset <= row[0] < offset + CHUNK]
            if not chunk:
                continue
            selects.append(sql)
            params.extend([[*column] for column in zip(*chunk, strict=True)])
            params.extend(extra)
        if not selects:
            continue
        statement = (
            f"SELECT {group}, {totals} FROM ({' UNION ALL '.join(selects)}) r GROUP BY {group}"  # noqa: S608
        )
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            for index, *values in cursor.fetchall():
                key = UsageKey(**dict(zip(names, values[: len(names)], strict=True)))
                group_sums = out[windows[index].key].setdefault(key, {})
                with localcontext(prec=EXACT_DIGITS):
                    for measure, amount in zip(measures, values[len(names) :], strict=True):
                        group_sums[measure] = group_sums.get(measure, ZERO) + amount
    return out


# --- Parts of a caller's statement (entitlement counters) -------------------------------------


def units_parts(
    environment_id: Any,
    *,
    customer_id: uuid.UUID,
    feature_id: uuid.UUID,
    start: dt.datetime,
    end: dt.datetime,
) -> list[tuple[str, list[Any]]]:
    """``SELECT %s, sum(usage_units) ...`` statements (SQL, parameters) whose sums add up
    to the customer's ``usage_units`` of the feature in ``[start, end)``, exact at the
    edges. The leading ``%s`` is the caller's label, its parameter not included: a caller
    that needs other sums in the same round trip ``UNION ALL``s them with its own."""
    filters = UsageFilter(customer_ids=[customer_id], feature_ids=[feature_id])
    out = []
    for segment in split(start, end, daily=None):
        sql, params = segment_rows_sql(
            segment,
            environment_id,
            group_by=(),
            measures=(Measure.USAGE_UNITS,),
            filters=filters,
        )
        # One row per part: the label and the segment's sum.
        out.append((f"SELECT %s, sum(usage_units) FROM ({sql}) s", params))  # noqa: S608
    return out
