"""The one place that cuts a window into rollup and raw-event segments and writes their SQL.

A window ``[start, end)`` is read as:

* whole UTC days from a daily rollup, when the grains and filters allow one
  (:func:`daily_source`);
* the remaining whole hours from ``events_hourlyrollup``;
* the partial hours at either edge from ``events_event`` itself.

Every segment is one range of its table's primary key (or of the events'
``(environment, ..., occurred_at)`` indexes), and the segments become one
``UNION ALL`` of rows with the same columns, so a read is one statement.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .types import AMOUNTS, Grain, Measure, UsageFilter

# apps.events.models.NO_API_KEY (the nil UUID): the key of events that no API key wrote.
NO_API_KEY = "00000000-0000-0000-0000-000000000000"

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


class Source(enum.Enum):
    """A table the ledger reads, by the grain its rows carry."""

    DAILY_CUSTOMER = "events_dailycustomerrollup"  # day x customer
    DAILY_FEATURE_MODEL = "events_dailyfeaturemodelrollup"  # day x feature x model
    HOURLY = "events_hourlyrollup"  # hour x customer x feature x model
    EVENTS = "events_event"  # one row per event

    @property
    def table(self) -> str:
        """The quoted table name, as Django writes it (query logs read the same)."""
        return f'"{self.value}"'

    @property
    def time_column(self) -> str:
        return "occurred_at" if self is Source.EVENTS else "bucket_start"


# The grains each daily rollup can answer (it carries these columns, and a day).
_DAILY_GRAINS = {
    Source.DAILY_CUSTOMER: frozenset({Grain.CUSTOMER, Grain.DAY}),
    Source.DAILY_FEATURE_MODEL: frozenset({Grain.FEATURE, Grain.MODEL, Grain.DAY}),
}


def daily_source(group_by: Sequence[Grain], filters: UsageFilter) -> Source | None:
    """The daily rollup that can serve whole days of this read, or None (hourly only).

    Day x feature x model serves any read it can (a few thousand rows a month at any
    volume); day x customer serves reads by customer alone.
    """
    grains = set(group_by)
    filtered = set()
    if filters.customer_ids is not None:
        filtered.add(Grain.CUSTOMER)
    if filters.feature_ids is not None:
        filtered.add(Grain.FEATURE)
    if filters.models is not None or filters.providers is not None:
        filtered.add(Grain.MODEL)
    if filters.api_key_ids is not None:
        filtered.add(Grain.API_KEY)
    for source in (Source.DAILY_FEATURE_MODEL, Source.DAILY_CUSTOMER):
        if grains | filtered <= _DAILY_GRAINS[source]:
            return source
    return None


def hour_floor(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def hour_ceil(at: dt.datetime) -> dt.datetime:
    floor = hour_floor(at)
    return floor if floor == at else floor + HOUR


def day_floor(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def day_ceil(at: dt.datetime) -> dt.datetime:
    floor = day_floor(at)
    return floor if floor == at else floor + DAY


@dataclass(frozen=True, slots=True)
class Segment:
    """``[start, end)`` of one source (rollup buckets by their start, events by time)."""

    source: Source
    start: dt.datetime
    end: dt.datetime


def split(start: dt.datetime, end: dt.datetime, *, daily: Source | None) -> list[Segment]:
    """``[start, end)`` as segments that cover every instant of it exactly once: whole
    days from ``daily`` (if any), whole hours from the hourly rollup, the fractions of
    hours at the edges from the raw events. Empty when ``end <= start``."""
    if end <= start:
        return []
    first_hour, last_hour = hour_ceil(start), hour_floor(end)
    if first_hour >= last_hour:
        return [Segment(Source.EVENTS, start, end)]
    middle: list[Segment] = []
    first_day, last_day = day_ceil(first_hour), day_floor(last_hour)
    if daily is not None and first_day < last_day:
        middle = [
            Segment(Source.HOURLY, first_hour, first_day),
            Segment(daily, first_day, last_day),
            Segment(Source.HOURLY, last_day, last_hour),
        ]
    else:
        middle = [Segment(Source.HOURLY, first_hour, last_hour)]
    return [
        *([Segment(Source.EVENTS, start, first_hour)] if start < first_hour else []),
        *(segment for segment in middle if segment.start < segment.end),
        *([Segment(Source.EVENTS, last_hour, end)] if last_hour < end else []),
    ]


# --- Column expressions ----------------------------------------------------------------------


def key_columns(grain: Grain, source: Source, alias: str = "") -> list[str]:
    """SQL of the grain's key columns on ``source`` (in :attr:`Grain.key_fields` order)."""
    p = f"{alias}." if alias else ""
    if grain is Grain.DAY:
        if source in (Source.DAILY_CUSTOMER, Source.DAILY_FEATURE_MODEL):
            return [f"{p}bucket_start"]
        return [f"date_trunc('day', {p}{source.time_column}, 'UTC')"]
    if grain is Grain.HOUR:
        if source is Source.HOURLY:
            return [f"{p}bucket_start"]
        if source is Source.EVENTS:
            return [f"date_trunc('hour', {p}occurred_at, 'UTC')"]
        raise ValueError("a daily rollup has no hours")
    if grain is Grain.API_KEY:
        if source is Source.EVENTS:  # NULL on events no key wrote; the rollup's nil UUID
            return [f"COALESCE({p}api_key_id, '{NO_API_KEY}'::uuid)"]
        if source is Source.HOURLY:
            return [f"{p}api_key_id"]
        raise ValueError("a daily rollup has no API-key grain")
    if source is Source.DAILY_CUSTOMER and grain is not Grain.CUSTOMER:
        raise ValueError(f"the daily customer rollup has no {grain} grain")
    if source is Source.DAILY_FEATURE_MODEL and grain is Grain.CUSTOMER:
        raise ValueError("the daily feature-model rollup has no customer grain")
    return [f"{p}{name}" for name in grain.key_fields]


# A raw event as one row of sums, so it unions with rollup rows (one event each).
_EVENT_MEASURE = {
    Measure.EVENT_COUNT: "1::bigint",
    Measure.USAGE_UNITS: "{p}usage_units",
    Measure.INPUT_TOKENS: "COALESCE({p}input_tokens, 0)",
    Measure.OUTPUT_TOKENS: "COALESCE({p}output_tokens, 0)",
    Measure.CACHE_READ_TOKENS: "COALESCE({p}cache_read_tokens, 0)",
    Measure.CACHE_WRITE_TOKENS: "COALESCE({p}cache_write_tokens, 0)",
    Measure.REASONING_TOKENS: "COALESCE({p}reasoning_tokens, 0)",
    # NULL (unpriced) adds nothing to the sum; unpriced_count says how many are missing.
    Measure.COST_USD: "{p}cost_usd",
    Measure.REVENUE_USD: "{p}revenue_usd",
    Measure.UNPRICED_COUNT: "({p}cost_usd IS NULL)::int",
    Measure.ESTIMATED_COST_USD: "CASE WHEN {p}cost_source = 'estimated' THEN {p}cost_usd END",
    Measure.REVENUE_COUNT: "({p}revenue_usd IS NOT NULL)::int",
    Measure.DURATION_MS_SUM: "COALESCE({p}duration_ms, 0)",
    Measure.DURATION_COUNT: "({p}duration_ms IS NOT NULL)::int",
}


def measure_column(measure: Measure, source: Source, alias: str = "") -> str:
    p = f"{alias}." if alias else ""
    if source is Source.EVENTS:
        return _EVENT_MEASURE[measure].format(p=p)
    return f"{p}{measure.value}"


def sum_of(measure: Measure, column: str) -> str:
    """The outer sum of a measure column, zero when nothing matched."""
    cast = "" if measure in AMOUNTS else "::bigint"
    return f"COALESCE(SUM({column}), 0){cast}"


def filter_sql(filters: UsageFilter, source: Source, alias: str = "") -> tuple[str, list[Any]]:
    """`` AND ...`` conditions of ``filters`` on ``source`` (empty when unfiltered)."""
    p = f"{alias}." if alias else ""
    parts: list[str] = []
    params: list[Any] = []
    api_key = (
        f"COALESCE({p}api_key_id, '{NO_API_KEY}'::uuid)"
        if source is Source.EVENTS
        else f"{p}api_key_id"
    )
    for column, values, cast in (
        (f"{p}customer_id", filters.customer_ids, "uuid"),
        (f"{p}feature_id", filters.feature_ids, "uuid"),
        (f"{p}model", filters.models, "text"),
        (f"{p}provider", filters.providers, "text"),
        (api_key, filters.api_key_ids, "uuid"),
    ):
        if values is None:
            continue
        listed = list(values)
        if len(listed) == 1:  # the plain equality the indexes' plans are written for
            parts.append(f" AND {column} = %s::{cast}")
            params.append(listed[0])
        else:
            parts.append(f" AND {column} = ANY(%s::{cast}[])")
            params.append(listed)
    return "".join(parts), params


def segment_rows_sql(
    segment: Segment,
    environment_id: Any,
    *,
    group_by: Sequence[Grain],
    measures: Sequence[Measure],
    filters: UsageFilter,
    last_bucket: bool = False,
) -> tuple[str, list[Any]]:
    """``SELECT`` of the segment's rows: the key columns (named as ``UsageKey`` fields),
    the measure columns (named as measures) and, with ``last_bucket``, the latest hour
    bucket a row covers (a daily rollup's ``last_bucket_start``)."""
    source = segment.source
    columns: list[str] = []
    for grain in group_by:
        columns.extend(
            f"{sql} AS {name}"
            for sql, name in zip(key_columns(grain, source), grain.key_fields, strict=True)
        )
    columns.extend(f"{measure_column(m, source)} AS {m.value}" for m in measures)
    if last_bucket:
        columns.append(
            {
                Source.EVENTS: "date_trunc('hour', occurred_at, 'UTC')",
                Source.HOURLY: "bucket_start",
            }.get(source, "last_bucket_start")
            + " AS last_bucket"
        )
    where, params = filter_sql(filters, source)
    time = source.time_column
    sql = (
        f"SELECT {', '.join(columns)} FROM {source.table}"  # noqa: S608 - names are ours
        f" WHERE environment_id = %s AND {time} >= %s AND {time} < %s{where}"
    )
    return sql, [environment_id, segment.start, segment.end, *params]
