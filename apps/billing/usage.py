"""Usage a period billed: sums of ``usage_units`` per customer and feature, from the rollups.

Whole hours come from ``events_hourlyrollup`` (kept in step with the events, so
a late event is in it as soon as it is stored). Periods start at 00:00 UTC;
only a period cut short (an immediate cancellation) ends inside an hour, and
that last fraction of an hour is summed from the events themselves. The daily
rollups carry no customer x feature grain, so the hourly table is the source.

Many ranges are summed in one statement: they are joined as a ``VALUES`` list,
so a batch of subscriptions costs one query whatever their periods.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Context, Decimal, localcontext
from typing import Any

from django.db import connection

from apps.credits.coverage import Coverage, uncovered_units
from apps.events import flags

# (key, customer_id, start, end): the usage of one customer over [start, end).
Range = tuple[Any, Any, dt.datetime, dt.datetime]
# key -> feature_id (or (feature_id, model, provider) with ``by_model``) -> units
Totals = dict[Any, dict[Any, Decimal]]
# key -> feature_id -> UTC day -> units
Daily = dict[Any, dict[Any, dict[dt.datetime, Decimal]]]

CHUNK = 2000
# Sums of rollup sums (38 digits each) stay exact.
_SUMS = Context(prec=100)


def _hour_floor(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _hour_ceil(at: dt.datetime) -> dt.datetime:
    floor = _hour_floor(at)
    return floor if floor == at else floor + dt.timedelta(hours=1)


def _split(start: dt.datetime, end: dt.datetime) -> tuple[list[tuple], list[tuple]]:
    """``[start, end)`` as whole hours (rollups) and the fractions of hours at its edges
    (raw events)."""
    hours: list[tuple] = []
    raw: list[tuple] = []
    if end <= start:
        return hours, raw
    first, last = _hour_ceil(start), _hour_floor(end)
    if first < last:
        hours.append((first, last))
        if start < first:
            raw.append((start, first))
        if last < end:
            raw.append((last, end))
    else:
        raw.append((start, end))
    return hours, raw


def _run(sql: str, rows: list[tuple], params: list[Any]) -> list[tuple]:
    """Run ``sql`` with the ranges as four arrays (index, customer, lo, hi) unnested into
    ``w``: one statement per chunk whatever the number of ranges."""
    out: list[tuple] = []
    for offset in range(0, len(rows), CHUNK):
        chunk = rows[offset : offset + CHUNK]
        columns = [list(column) for column in zip(*chunk, strict=True)]
        with connection.cursor() as cur:
            cur.execute(sql, [*columns, *params])
            out.extend(cur.fetchall())
    return out


_HOURLY = """
SELECT w.idx, {keys}, SUM(r.{measure})
FROM unnest(%s::int[], %s::uuid[], %s::timestamptz[], %s::timestamptz[])
     AS w(idx, customer_id, lo, hi)
JOIN events_hourlyrollup r
  ON r.environment_id = %s AND r.customer_id = w.customer_id
 AND r.bucket_start >= w.lo AND r.bucket_start < w.hi
GROUP BY w.idx, {keys}
"""

_RAW = """
SELECT w.idx, {keys}, COALESCE(SUM(e.{measure}), 0)
FROM unnest(%s::int[], %s::uuid[], %s::timestamptz[], %s::timestamptz[])
     AS w(idx, customer_id, lo, hi)
JOIN events_event e
  ON e.environment_id = %s AND e.customer_id = w.customer_id
 AND e.occurred_at >= w.lo AND e.occurred_at < w.hi
GROUP BY w.idx, {keys}
"""


# revenue_usd: the events' own revenue (the Stripe import leaves periods that have some alone).
MEASURES = frozenset({"usage_units", "cost_usd", "revenue_usd"})


def usage_totals(
    environment_id: Any,
    ranges: Sequence[Range],
    *,
    measure: str = "usage_units",
    by_model: bool = False,
) -> Totals:
    """Units (or known cost, or event revenue, USD) per feature for each range (features
    without events are absent); with ``by_model``, per ``(feature_id, model, provider)``."""
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}")
    hourly: list[tuple] = []
    raw: list[tuple] = []
    for index, (_key, customer_id, start, end) in enumerate(ranges):
        hours, edges = _split(start, end)
        hourly.extend((index, customer_id, lo, hi) for lo, hi in hours)
        raw.extend((index, customer_id, lo, hi) for lo, hi in edges)
    out: Totals = {key: {} for key, *_ in ranges}
    for sql, rows, alias in ((_HOURLY, hourly, "r"), (_RAW, raw, "e")):
        if not rows:
            continue
        columns = ("feature_id", "model", "provider") if by_model else ("feature_id",)
        keys = ", ".join(f"{alias}.{column}" for column in columns)
        with localcontext(_SUMS):
            for index, *key, units in _run(
                sql.format(measure=measure, keys=keys), rows, [environment_id]
            ):
                group = tuple(key) if by_model else key[0]
                bucket = out[ranges[index][0]]
                bucket[group] = bucket.get(group, Decimal(0)) + units
    return out


_HOURLY_SUMS = """
SELECT w.idx, {keys}, {sums}
FROM unnest(%s::int[], %s::uuid[], %s::timestamptz[], %s::timestamptz[])
     AS w(idx, customer_id, lo, hi)
JOIN events_hourlyrollup r
  ON r.environment_id = %s AND r.customer_id = w.customer_id
 AND r.bucket_start >= w.lo AND r.bucket_start < w.hi
GROUP BY w.idx, {keys}
"""

_RAW_SUMS = """
SELECT w.idx, {keys}, {sums}
FROM unnest(%s::int[], %s::uuid[], %s::timestamptz[], %s::timestamptz[])
     AS w(idx, customer_id, lo, hi)
JOIN events_event e
  ON e.environment_id = %s AND e.customer_id = w.customer_id
 AND e.occurred_at >= w.lo AND e.occurred_at < w.hi
GROUP BY w.idx, {keys}
"""


def usage_sums(
    environment_id: Any,
    ranges: Sequence[Range],
    *,
    measures: Sequence[str],
    by_model: bool = False,
) -> dict[str, Totals]:
    """:func:`usage_totals` of several measures in one pass over the rows (one statement
    per chunk for the whole hours, one for the edges): ``{measure: totals}``."""
    if not measures or any(measure not in MEASURES for measure in measures):
        raise ValueError(f"unknown measures {measures!r}")
    hourly: list[tuple] = []
    raw: list[tuple] = []
    for index, (_key, customer_id, start, end) in enumerate(ranges):
        hours, edges = _split(start, end)
        hourly.extend((index, customer_id, lo, hi) for lo, hi in hours)
        raw.extend((index, customer_id, lo, hi) for lo, hi in edges)
    out: dict[str, Totals] = {measure: {key: {} for key, *_ in ranges} for measure in measures}
    columns = ("feature_id", "model", "provider") if by_model else ("feature_id",)
    for sql, rows, alias in ((_HOURLY_SUMS, hourly, "r"), (_RAW_SUMS, raw, "e")):
        if not rows:
            continue
        keys = ", ".join(f"{alias}.{column}" for column in columns)
        sums = ", ".join(f"COALESCE(SUM({alias}.{measure}), 0)" for measure in measures)
        with localcontext(_SUMS):
            for index, *values in _run(sql.format(keys=keys, sums=sums), rows, [environment_id]):
                key, amounts = values[: len(columns)], values[len(columns) :]
                group = tuple(key) if by_model else key[0]
                for measure, amount in zip(measures, amounts, strict=True):
                    bucket = out[measure][ranges[index][0]]
                    bucket[group] = bucket.get(group, Decimal(0)) + amount
    return out


_HOURLY_DAILY = """
SELECT w.idx, r.feature_id, date_trunc('day', r.bucket_start AT TIME ZONE 'UTC'),
       SUM(r.usage_units)
FROM unnest(%s::int[], %s::uuid[], %s::timestamptz[], %s::timestamptz[])
     AS w(idx, customer_id, lo, hi)
JOIN events_hourlyrollup r
  ON r.environment_id = %s AND r.customer_id = w.customer_id
 AND r.bucket_start >= w.lo AND r.bucket_start < w.hi AND r.feature_id = ANY(%s)
GROUP BY 1, 2, 3
"""

_RAW_DAILY = """
SELECT w.idx, e.feature_id, date_trunc('day', e.occurred_at AT TIME ZONE 'UTC'),
       SUM(e.usage_units)
FROM unnest(%s::int[], %s::uuid[], %s::timestamptz[], %s::timestamptz[])
     AS w(idx, customer_id, lo, hi)
JOIN events_event e
  ON e.environment_id = %s AND e.customer_id = w.customer_id
 AND e.occurred_at >= w.lo AND e.occurred_at < w.hi AND e.feature_id = ANY(%s)
GROUP BY 1, 2, 3
"""


def usage_by_day(environment_id: Any, ranges: Sequence[Range], feature_ids: Iterable[Any]) -> Daily:
    """Units per feature and UTC day for each range, for the given features only
    (caps that reset daily, weekly or monthly count per window)."""
    features = list({uuid.UUID(str(f)) for f in feature_ids})
    out: Daily = {key: defaultdict(dict) for key, *_ in ranges}
    if not features:
        return out
    hourly: list[tuple] = []
    raw: list[tuple] = []
    for index, (_key, customer_id, start, end) in enumerate(ranges):
        hours, edges = _split(start, end)
        hourly.extend((index, customer_id, lo, hi) for lo, hi in hours)
        raw.extend((index, customer_id, lo, hi) for lo, hi in edges)
    for sql, rows in ((_HOURLY_DAILY, hourly), (_RAW_DAILY, raw)):
        if not rows:
            continue
        for index, feature_id, naive_day, units in _run(sql, rows, [environment_id, features]):
            day = naive_day.replace(tzinfo=dt.UTC)
            per_day = out[ranges[index][0]][feature_id]
            with localcontext(_SUMS):
                per_day[day] = per_day.get(day, Decimal(0)) + units
    return out


# Units credits did not cover: the events stamped with a hard-limit pool's shortfall or a
# credit error, grouped by what ``apps.credits.coverage.uncovered_units`` needs (their units
# and credit flags; equal events collapse into one row with their count).
_CREDIT_FLAGS = flags.sql_subset(
    (flags.CREDIT_ERROR, flags.CREDIT_DEDUCTED, flags.CREDIT_SHORTFALL), "e"
)
_UNCOVERED = f"""
SELECT w.idx, e.feature_id, e.usage_units, {_CREDIT_FLAGS}::text AS flags, count(*)
FROM unnest(%s::int[], %s::uuid[], %s::timestamptz[], %s::timestamptz[])
     AS w(idx, customer_id, lo, hi)
JOIN events_event e
  ON e.environment_id = %s AND e.customer_id = w.customer_id
 AND e.occurred_at >= w.lo AND e.occurred_at < w.hi AND e.feature_id = ANY(%s)
 AND ({flags.sql_has(flags.CREDIT_SHORTFALL, "e")} OR {flags.sql_has(flags.CREDIT_ERROR, "e")})
GROUP BY 1, 2, 3, 4
"""  # noqa: S608 - the flag expressions are ours


def uncovered_by_credits(
    environment_id: Any, ranges: Sequence[Range], feature_ids: Iterable[Any]
) -> Totals:
    """Units of credit-backed ``feature_ids`` that credits did not cover (a hard-limit
    pool's shortfall, or no credit model to charge), per feature for each range
    (features without any are absent).

    Read from the events themselves (the rollups do not say which units credits paid):
    only the ranges' customers' events of these features, through the events' (customer,
    time) index; the caller skips customers whose soft pools cover every denomination."""
    features = list({uuid.UUID(str(f)) for f in feature_ids})
    out: Totals = {key: {} for key, *_ in ranges}
    if not features or not ranges:
        return out
    rows = [
        (index, customer_id, start, end)
        for index, (_k, customer_id, start, end) in enumerate(ranges)
        if end > start
    ]
    for index, feature_id, units, stamped, count in _run(
        _UNCOVERED, rows, [environment_id, features]
    ):
        coverage = Coverage.from_flags(flags.EventFlags.from_json(json.loads(stamped)))
        uncovered = uncovered_units(units, coverage)
        with localcontext(_SUMS):
            uncovered *= count
            if uncovered:
                bucket = out[ranges[index][0]]
                bucket[feature_id] = bucket.get(feature_id, Decimal(0)) + uncovered
    return out
