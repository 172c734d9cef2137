"""Reads of the Observe API. Every function takes the environment first.

Totals never scan raw events: they GROUP BY over ``events_hourlyrollup``
(kept exactly in step with the events), whose primary key
``(environment_id, bucket_start, ...)`` serves the window filter. Windows are
therefore whole hours (see :meth:`Window.to_hours`). Raw events are read only
where the rollups cannot answer: the event list and trace, latency percentiles
(bounded by the window) and a precise ``lastSeen`` (one index probe per row
of the page).

Amounts are USD ``Decimal`` sums of the stored 12-dp amounts; cost sums priced
events only (``unpriced`` says how many are missing from it). Margin is
revenue - cost; margin % is margin / revenue x 100 (None when revenue is 0).
Python arithmetic on sums runs in a 80-digit context: the default 28 digits
could round a 38-digit sum silently.

Revenue is the events' ``revenueAmount`` plus, where an app registered one, revenue
the events do not carry (subscriptions imported from Stripe: :mod:`.revenue_sources`),
attributed to customers, features and models for the window; every read below adds
it, so the tables, their sorts, the customer page and the overview agree.

``lastSeen`` is the time of the latest event in the window: one probe of an
``(environment, customer|feature|model, occurred_at)`` index per row shown
(per row of the whole table only when the table is sorted by it).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import TYPE_CHECKING, Any

from django.contrib.postgres.fields import ArrayField
from django.db import connection
from django.db.models import (
    Aggregate,
    BigIntegerField,
    Count,
    DateTimeField,
    DecimalField,
    ExpressionWrapper,
    F,
    FloatField,
    Func,
    Max,
    Min,
    Model,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, NullIf

from apps.core.errors import NotFound
from apps.core.tenancy import scoped
from apps.customers.models import Customer
from apps.customers.selectors import customer_get, customers_search
from apps.events.models import (
    CostSource,
    DailyCustomerRollup,
    DailyFeatureModelRollup,
    Event,
    HourlyRollup,
)
from apps.features.models import Feature
from apps.features.selectors import features_search

from .params import TableQuery, Window
from .revenue_sources import ExtraRevenue, extra_revenue

if TYPE_CHECKING:
    from apps.accounts.models import Environment

ZERO = Decimal(0)
SUM_FIELD = DecimalField(max_digits=38, decimal_places=12)
PCT_QUANTUM = Decimal("0.01")
AMOUNT_QUANTUM = Decimal(1).scaleb(-12)
# The trace view lists at most this many events (the totals always cover all).
TRACE_MAX_EVENTS = 1000
# Digits for Python arithmetic on sums (numeric(38, 12) columns, and their quotients).
EXACT_DIGITS = 80


# --- Measures --------------------------------------------------------------------------


def _dec_sum(name: str) -> Coalesce:
    return Coalesce(Sum(name), Value(ZERO), output_field=SUM_FIELD)


def _int_sum(name: str) -> Coalesce:
    return Coalesce(Sum(name), Value(0), output_field=BigIntegerField())


def _measures() -> dict[str, Any]:
    """The sums every aggregate row carries (fresh expressions per query)."""
    return {
        "events": _int_sum("event_count"),
        "cost": _dec_sum("cost_usd"),
        "revenue": _dec_sum("revenue_usd"),
        "unpriced": _int_sum("unpriced_count"),
        "usage_units": _dec_sum("usage_units"),
    }


def _derived() -> dict[str, Any]:
    """Margin and margin % as SQL, so tables can sort on them in the database."""
    return {
        "margin": ExpressionWrapper(F("revenue") - F("cost"), output_field=SUM_FIELD),
        "margin_pct": ExpressionWrapper(
            (F("revenue") - F("cost")) * Value(Decimal(100)) / NullIf(F("revenue"), Value(ZERO)),
            output_field=DecimalField(),
        ),
    }


@dataclass(slots=True)
class Totals:
    events: int = 0
    cost: Decimal = ZERO
    revenue: Decimal = ZERO
    unpriced: int = 0
    usage_units: Decimal = ZERO

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Totals:
        return cls(
            events=row["events"] or 0,
            cost=row["cost"] if row["cost"] is not None else ZERO,
            revenue=row["revenue"] if row["revenue"] is not None else ZERO,
            unpriced=row["unpriced"] or 0,
            usage_units=row["usage_units"] if row["usage_units"] is not None else ZERO,
        )

    def add(self, other: Totals) -> None:
        with localcontext(prec=EXACT_DIGITS):
            self.events += other.events
            self.cost += other.cost
            self.revenue += other.revenue
            self.unpriced += other.unpriced
            self.usage_units += other.usage_units

    @property
    def margin(self) -> Decimal:
        with localcontext(prec=EXACT_DIGITS):
            return self.revenue - self.cost

    @property
    def margin_pct(self) -> Decimal | None:
        """Percent of revenue kept, 2 dp (half-even); None when there is no revenue."""
        if not self.revenue:
            return None
        with localcontext(prec=EXACT_DIGITS):
            return (self.margin * 100 / self.revenue).quantize(
                PCT_QUANTUM, rounding=ROUND_HALF_EVEN
            )

    @property
    def avg_cost_per_priced_event(self) -> Decimal | None:
        """Cost / priced events, 12 dp (half-even); None when no event is priced."""
        priced = self.events - self.unpriced
        if priced <= 0:
            return None
        with localcontext(prec=EXACT_DIGITS):
            return (self.cost / priced).quantize(AMOUNT_QUANTUM, rounding=ROUND_HALF_EVEN)


def rollups_in(environment: Environment, window: Window) -> QuerySet[HourlyRollup]:
    """The environment's rollup rows of the (hour-aligned) window."""
    return scoped(HourlyRollup, environment).filter(
        bucket_start__gte=window.start, bucket_start__lt=window.end
    )


# --- Overview --------------------------------------------------------------------------


@dataclass(slots=True)
class DayTotals:
    date: dt.date
    totals: Totals


@dataclass(slots=True)
class Overview:
    window: Window
    totals: Totals
    customers: int
    features: int
    models: int
    daily: list[DayTotals]


def _hour_ceil(at: dt.datetime) -> dt.datetime:
    floor = at.replace(minute=0, second=0, microsecond=0)
    return floor if floor == at else floor + dt.timedelta(hours=1)


def _day_floor(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class _Split:
    """A window cut for the rollups: the hour buckets ``[start, end)`` it covers
    (``bucket_start >= window.start`` and ``< window.end``), of which the whole UTC
    days ``[days_start, days_end)`` are read from a daily rollup, the edge hours
    ``[start, days_start)`` and ``[days_end, end)`` from the hourly one."""

    start: dt.datetime
    days_start: dt.datetime
    days_end: dt.datetime
    end: dt.datetime

    @classmethod
    def of(cls, window: Window) -> _Split:
        start, end = _hour_ceil(window.start), _hour_ceil(window.end)
        first_day = _day_floor(start)
        if first_day < start:
            first_day += dt.timedelta(days=1)
        last_day = _day_floor(end)
        if first_day >= last_day:
            return cls(start, end, end, end)  # no whole day: hours only
        return cls(start, first_day, last_day, end)

    def rollups(
        self, environment: Environment, daily: type[Model], columns: str, hourly_columns: str
    ) -> tuple[str, list[Any]]:
        """SQL and parameters of the window's rollup rows: the whole days from
        ``daily``'s table, the edge hours from the hourly rollup (each part one
        range of its table's primary key)."""
        env, qn = environment.pk, connection.ops.quote_name
        sql = f"""
            SELECT {columns} FROM {qn(daily._meta.db_table)}
             WHERE environment_id = %s AND bucket_start >= %s AND bucket_start < %s
            UNION ALL
            SELECT {hourly_columns} FROM {qn(HourlyRollup._meta.db_table)}
             WHERE environment_id = %s AND bucket_start >= %s AND bucket_start < %s
            UNION ALL
            SELECT {hourly_columns} FROM {qn(HourlyRollup._meta.db_table)}
             WHERE environment_id = %s AND bucket_start >= %s AND bucket_start < %s
        """  # noqa: S608 - table and column names are ours
        params = [env, self.days_start, self.days_end, env, self.start, self.days_start]
        return sql, [*params, env, self.days_end, self.end]


_MEASURE_SQL = """
    COALESCE(SUM(event_count), 0)::bigint AS events,
    COALESCE(SUM(cost_usd), 0) AS cost,
    COALESCE(SUM(revenue_usd), 0) AS revenue,
    COALESCE(SUM(unpriced_count), 0)::bigint AS unpriced,
    COALESCE(SUM(usage_units), 0) AS usage_units
"""
_MEASURE_COLUMNS = "event_count, cost_usd, revenue_usd, unpriced_count, usage_units"


def _dicts(cursor: Any) -> list[dict[str, Any]]:
    columns = [col.name for col in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def window_extra(environment: Environment, window: Window) -> ExtraRevenue:
    """Revenue beside the events' over the hours the rollups read for ``window`` (the
    hour buckets from the hour at or after its start to the one at or after its end)."""
    return extra_revenue(environment, _hour_ceil(window.start), _hour_ceil(window.end))


def _add_days(by_day: dict[dt.date, Totals], extra: ExtraRevenue) -> None:
    with localcontext(prec=EXACT_DIGITS):
        for day, amount in extra.days.items():
            by_day.setdefault(day, Totals()).revenue += amount


def overview(
    environment: Environment, window: Window, *, customer_count: int | None = None
) -> Overview:
    """Totals, activity counts and a gap-free daily series: two queries.

    ``customer_count``: the number of customers with events in the window when the
    caller has it already (:attr:`Tops.active` of :func:`customer_tops` for the same
    window), so it is not counted again (at 10M events the count is a third of the
    overview's SQL time).

    Whole days come from the daily rollups, the window's edge hours from the
    hourly one: the sums, the series and the feature and model counts from
    day x feature x model (a few thousand rows a month, whatever the volume),
    the customer count from day x customer (its primary key alone). The same
    values as the hourly rollup alone gives: every rollup is exact, and the
    totals are the exact sum of the days.
    """
    split = _Split.of(window)
    day = "(bucket_start AT TIME ZONE 'UTC')::date AS day"
    sums, params = split.rollups(
        environment,
        DailyFeatureModelRollup,
        f"{day}, {_MEASURE_COLUMNS}",
        f"{day}, {_MEASURE_COLUMNS}",
    )
    customers, customer_params = split.rollups(
        environment, DailyCustomerRollup, "customer_id", "customer_id"
    )
    activity, activity_params = split.rollups(
        environment,
        DailyFeatureModelRollup,
        "feature_id, model, provider",
        "feature_id, model, provider",
    )
    if customer_count is None:
        counted = f"(SELECT count(*) FROM (SELECT customer_id FROM ({customers}) c GROUP BY 1) g)"  # noqa: S608
    else:
        counted, customer_params = "%s", [customer_count]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT day, {_MEASURE_SQL} FROM ({sums}) r GROUP BY day",  # noqa: S608
            params,
        )
        by_day = {row["day"]: Totals.of(row) for row in _dicts(cursor)}
        cursor.execute(
            f"""
            SELECT {counted},
                   count(DISTINCT feature_id),
                   count(DISTINCT provider || '/' || model) FILTER (WHERE model <> '')
              FROM ({activity}) r
            """,  # noqa: S608
            [*customer_params, *activity_params],
        )
        customer_count, features, models = cursor.fetchone()
    _add_days(by_day, window_extra(environment, window))
    totals = Totals()
    for day_totals in by_day.values():
        totals.add(day_totals)
    return Overview(
        window=window,
        totals=totals,
        customers=customer_count,
        features=features,
        models=models,
        daily=[DayTotals(day, by_day.get(day, Totals())) for day in window.days()],
    )


def window_totals(environment: Environment, window: Window) -> Totals:
    """:func:`overview`'s totals alone (for a comparison window): one query."""
    sums, params = _Split.of(window).rollups(
        environment, DailyFeatureModelRollup, _MEASURE_COLUMNS, _MEASURE_COLUMNS
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_MEASURE_SQL} FROM ({sums}) r", params)  # noqa: S608
        totals = Totals.of(_dicts(cursor)[0])
    with localcontext(prec=EXACT_DIGITS):
        totals.revenue += window_extra(environment, window).total
    return totals


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


def _order_by(sort: str, tiebreak: tuple[str, ...]) -> list[Any]:
    """A total order: the sort (NULLs last either way), then the group's key."""
    name = TABLE_SORTS[sort.lstrip("-")]
    expression = (
        F(name).desc(nulls_last=True) if sort.startswith("-") else F(name).asc(nulls_last=True)
    )
    return [expression, *tiebreak]


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


@dataclass(slots=True)
class CustomerRow:
    customer: Customer
    totals: Totals
    last_bucket: dt.datetime
    last_seen: dt.datetime | None


@dataclass(slots=True)
class CustomerTable:
    rows: list[CustomerRow]
    has_more: bool


def _last_event(environment: Environment, window: Window, **match: str) -> Subquery:
    """Latest event of the outer row in the window: one probe of an (env, column, time) index.

    ``match`` maps event columns to the outer query's columns (``customer_id="id"``).
    """
    return Subquery(
        scoped(Event, environment)
        .filter(
            **{column: OuterRef(outer) for column, outer in match.items()},
            occurred_at__gte=window.start,
            occurred_at__lt=window.end,
        )
        .order_by("-occurred_at")
        .values("occurred_at")[:1],
        output_field=DateTimeField(),
    )


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


def _grouped_select(
    environment: Environment,
    window: Window,
    *,
    daily: type[Model],
    key: str,
    search: QuerySet[Any] | None = None,
    last_seen: bool = False,
    extra: dict[uuid.UUID, Decimal] | None = None,
) -> tuple[str, list[Any]]:
    """SQL (unordered) and parameters of the sums per ``key`` (a column of ``daily`` and of
    the hourly rollup) over the window's rollups (see :class:`_Split`); ``search``: a
    values("id") queryset the key must be in; ``last_seen``: add the probe of raw events;
    ``extra``: revenue per key beside the events' (rows of revenue alone, so a key that
    has only such revenue is a group too, and the sorts see it)."""
    rollups, params = _Split.of(window).rollups(
        environment,
        daily,
        f"{key}, {_MEASURE_COLUMNS}, last_bucket_start AS last_bucket",
        f"{key}, {_MEASURE_COLUMNS}, bucket_start AS last_bucket",
    )
    if extra:
        rollups += """
            UNION ALL
            SELECT x.key, 0::bigint, 0::numeric, x.revenue, 0::bigint, 0::numeric,
                   NULL::timestamptz
              FROM unnest(%s::uuid[], %s::numeric[]) AS x(key, revenue)
        """
        params = [*params, list(extra), list(extra.values())]
    probe = where = ""
    if last_seen:
        probe = f""",
            (SELECT e.occurred_at FROM events_event e
              WHERE e.environment_id = %s AND e.{key} = r.{key}
                AND e.occurred_at >= %s AND e.occurred_at < %s
              ORDER BY 1 DESC LIMIT 1) AS last_seen"""  # noqa: S608 - names are ours
        params = [environment.pk, window.start, window.end, *params]
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
    daily: type[Model],
    key: str,
    search: QuerySet[Any] | None,
    extra: dict[uuid.UUID, Decimal],
) -> _GroupedRows:
    """Sums per ``key`` over the window's rollups, in the query's total order."""
    sql, params = _grouped_select(
        environment,
        query.window,
        daily=daily,
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
    daily: type[Model],
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
    sql, params = _grouped_select(environment, window, daily=daily, key=key, extra=extra)
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


def customers_grouped(environment: Environment, query: TableQuery) -> _GroupedRows:
    """Per-customer sums over the window's rollups, in the query's total order.

    Whole days from the day x customer rollup, the edge hours from the hourly
    one (see :class:`_Split`): the same sums and last active hour as the hourly
    rollup alone gives, from ~24 x fewer rows. A customer with revenue beside its
    events' (:func:`window_extra`) is a row even without events.
    """
    return _table_grouped(
        environment,
        query,
        daily=DailyCustomerRollup,
        key="customer_id",
        search=(customers_search(environment, query.search).values("id") if query.search else None),
        extra=window_extra(environment, query.window).customers,
    )


def customer_rows(
    environment: Environment, window: Window, grouped: list[dict[str, Any]]
) -> list[CustomerRow]:
    """Names and a precise ``lastSeen`` for these grouped rows only: one query."""
    ids = [row["customer_id"] for row in grouped]
    customers = {
        customer.pk: customer
        for customer in scoped(Customer, environment)
        .filter(id__in=ids)
        .annotate(last_seen=_last_event(environment, window, customer_id="id"))
    }
    return [
        CustomerRow(
            customer=customers[row["customer_id"]],
            totals=Totals.of(row),
            last_bucket=row["last_bucket"],
            last_seen=customers[row["customer_id"]].last_seen,
        )
        for row in grouped
        # Rollups carry no foreign key; a customer row that is gone cannot be named.
        if row["customer_id"] in customers
    ]


def customer_table(environment: Environment, query: TableQuery, *, limit: int) -> CustomerTable:
    """One page of customers by activity in the window: two queries.

    1. GROUP BY customer over the rollups, sorted and cut in SQL (offset page);
    2. names and a precise ``lastSeen`` of the page's customers only.
    """
    page, has_more = _page(customers_grouped(environment, query), query, limit)
    return CustomerTable(rows=customer_rows(environment, query.window, page), has_more=has_more)


def customer_table_all(
    environment: Environment, query: TableQuery, *, chunk: int = 1000
) -> Iterator[CustomerRow]:
    """Every row of the table (for exports), streamed in chunks."""
    for grouped in _chunks(customers_grouped(environment, query), chunk):
        yield from customer_rows(environment, query.window, grouped)


@dataclass(slots=True)
class Tops:
    """The first rows of a table under a few sorts, how many rows the table has, and how
    many of them have events in the window (the others: revenue beside the events')."""

    count: int
    rows: dict[str, list[Any]]
    active: int = 0


def customer_tops(
    environment: Environment, window: Window, *, sorts: Sequence[str], limit: int
) -> Tops:
    """:func:`customer_table`'s first ``limit`` rows under each sort (the same rows, in
    the same order) and the number of active customers: two queries for all the sorts."""
    count, active, grouped = _tops(
        environment,
        window,
        daily=DailyCustomerRollup,
        key="customer_id",
        sorts=sorts,
        limit=limit,
        extra=window_extra(environment, window).customers,
    )
    unique = {row["customer_id"]: row for rows in grouped.values() for row in rows}
    named = {row.customer.pk: row for row in customer_rows(environment, window, [*unique.values()])}
    return Tops(
        count,
        {
            sort: [named[row["customer_id"]] for row in rows if row["customer_id"] in named]
            for sort, rows in grouped.items()
        },
        active,
    )


@dataclass(slots=True)
class FeatureBreakdown:
    feature_id: uuid.UUID
    key: str
    name: str
    totals: Totals = field(default_factory=Totals)
    models: list[ModelSlice] = field(default_factory=list)


@dataclass(slots=True)
class CustomerDetail:
    customer: Customer
    window: Window
    totals: Totals
    last_seen: dt.datetime | None
    features: list[FeatureBreakdown]


def _feature_model_breakdown(
    environment: Environment, rollups: QuerySet[HourlyRollup]
) -> list[FeatureBreakdown]:
    """Feature x model sums (one GROUP BY), features by cost, models by cost within."""
    # The django-stubs plugin checks order_by("-cost") without the **_measures() annotations,
    # which it cannot see (it drops ** keyword arguments), so it reports "cost" unknown.
    slices = list(
        rollups.values("feature_id", "model", "provider")  # type: ignore[misc]  # see above
        .annotate(**_measures())
        .order_by("feature_id", "-cost", "model", "provider")
    )
    names = {
        feature.pk: feature
        for feature in scoped(Feature, environment)
        .filter(id__in={row["feature_id"] for row in slices})
        .only("id", "key", "name")
    }
    features: dict[uuid.UUID, FeatureBreakdown] = {}
    for row in slices:
        feature = names.get(row["feature_id"])
        entry = features.get(row["feature_id"])
        if entry is None:
            entry = features[row["feature_id"]] = FeatureBreakdown(
                feature_id=row["feature_id"],
                key=feature.key if feature else "",
                name=feature.name if feature else "",
            )
        totals = Totals.of(row)
        entry.totals.add(totals)
        entry.models.append(ModelSlice(row["model"], row["provider"], totals))
    return sorted(features.values(), key=lambda f: (-f.totals.cost, f.key))


def _add_to_breakdown(
    features: list[FeatureBreakdown], extra: dict[tuple[uuid.UUID, str, str], Decimal]
) -> None:
    """Add revenue per (feature, model, provider) to a breakdown's slices and features."""
    with localcontext(prec=EXACT_DIGITS):
        for feature in features:
            for piece in feature.models:
                amount = extra.get((feature.feature_id, piece.model, piece.provider))
                if amount:
                    piece.totals.revenue += amount
                    feature.totals.revenue += amount


def customer_detail(environment: Environment, reference_id: str, window: Window) -> CustomerDetail:
    """One customer's totals in the window and its feature x model breakdown (404 if unknown)."""
    customer = customer_get(environment, reference_id)
    features = _feature_model_breakdown(
        environment, rollups_in(environment, window).filter(customer_id=customer.pk)
    )
    totals = Totals()  # the exact sum of the breakdown (one GROUP BY for both)
    for feature in features:
        totals.add(feature.totals)
    extra = window_extra(environment, window)
    if customer.pk in extra.customers:
        _add_to_breakdown(features, extra.by_feature_model(customer.pk))
        with localcontext(prec=EXACT_DIGITS):
            # All of it, also what no usage could carry (attributed to no feature).
            totals.revenue += extra.customers[customer.pk]
    last_seen = (
        scoped(Event, environment)
        .filter(
            customer_id=customer.pk,
            occurred_at__gte=window.start,
            occurred_at__lt=window.end,
        )
        .order_by("-occurred_at")
        .values_list("occurred_at", flat=True)
        .first()
    )
    return CustomerDetail(
        customer=customer,
        window=window,
        totals=totals,
        last_seen=last_seen,
        features=features,
    )


@dataclass(slots=True)
class FeatureRow:
    feature: Feature
    totals: Totals
    last_bucket: dt.datetime
    last_seen: dt.datetime | None
    models: list[ModelSlice]


@dataclass(slots=True)
class FeatureTable:
    rows: list[FeatureRow]
    has_more: bool


def features_grouped(
    environment: Environment, query: TableQuery, *, extra: ExtraRevenue | None = None
) -> _GroupedRows:
    """Per-feature sums: whole days from the day x feature x model rollup (a few
    thousand rows a month at any volume), the edge hours from the hourly one."""
    if extra is None:
        extra = window_extra(environment, query.window)
    return _table_grouped(
        environment,
        query,
        daily=DailyFeatureModelRollup,
        key="feature_id",
        search=features_search(environment, query.search).values("id") if query.search else None,
        extra=extra.by_feature(),
    )


def feature_rows(
    environment: Environment,
    window: Window,
    grouped: list[dict[str, Any]],
    *,
    extra: ExtraRevenue | None = None,
) -> list[FeatureRow]:
    """Model breakdown, names and ``lastSeen`` for these grouped rows only: two queries."""
    ids = [row["feature_id"] for row in grouped]
    if not ids:
        return []
    models: dict[uuid.UUID, list[ModelSlice]] = {pk: [] for pk in ids}
    columns = f"feature_id, model, provider, {_MEASURE_COLUMNS}"
    rollups, params = _Split.of(window).rollups(
        environment, DailyFeatureModelRollup, columns, columns
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT feature_id, model, provider, {_MEASURE_SQL}
              FROM ({rollups}) r
             WHERE feature_id = ANY(%s)
             GROUP BY 1, 2, 3
             ORDER BY 1, cost DESC, 2, 3
            """,  # noqa: S608 - names are ours, values bound
            [*params, ids],
        )
        for row in _dicts(cursor):
            models[row["feature_id"]].append(
                ModelSlice(row["model"], row["provider"], Totals.of(row))
            )
    if extra is None:
        extra = window_extra(environment, window)
    if extra:
        by_slice = extra.by_feature_model()
        with localcontext(prec=EXACT_DIGITS):
            for feature_id, pieces in models.items():
                for piece in pieces:
                    piece.totals.revenue += by_slice.get(
                        (feature_id, piece.model, piece.provider), ZERO
                    )
    features = {
        feature.pk: feature
        for feature in scoped(Feature, environment)
        .filter(id__in=ids)
        .annotate(last_seen=_last_event(environment, window, feature_id="id"))
    }
    return [
        FeatureRow(
            feature=features[row["feature_id"]],
            totals=Totals.of(row),
            last_bucket=row["last_bucket"],
            last_seen=features[row["feature_id"]].last_seen,
            models=models[row["feature_id"]],
        )
        for row in grouped
        if row["feature_id"] in features
    ]


def feature_table(environment: Environment, query: TableQuery, *, limit: int) -> FeatureTable:
    """One page of features by activity, each with its models: three queries."""
    extra = window_extra(environment, query.window)
    page, has_more = _page(features_grouped(environment, query, extra=extra), query, limit)
    return FeatureTable(
        rows=feature_rows(environment, query.window, page, extra=extra), has_more=has_more
    )


def feature_table_all(
    environment: Environment, query: TableQuery, *, chunk: int = 500
) -> Iterator[FeatureRow]:
    extra = window_extra(environment, query.window)
    for grouped in _chunks(features_grouped(environment, query, extra=extra), chunk):
        yield from feature_rows(environment, query.window, grouped, extra=extra)


def feature_tops(
    environment: Environment, window: Window, *, sorts: Sequence[str], limit: int
) -> Tops:
    """:func:`feature_table`'s first ``limit`` rows under each sort, and the number of
    active features: three queries for all the sorts."""
    extra = window_extra(environment, window)
    count, active, grouped = _tops(
        environment,
        window,
        daily=DailyFeatureModelRollup,
        key="feature_id",
        sorts=sorts,
        limit=limit,
        extra=extra.by_feature(),
    )
    unique = {row["feature_id"]: row for rows in grouped.values() for row in rows}
    named = {
        row.feature.pk: row
        for row in feature_rows(environment, window, [*unique.values()], extra=extra)
    }
    return Tops(
        count,
        {
            sort: [named[row["feature_id"]] for row in rows if row["feature_id"] in named]
            for sort, rows in grouped.items()
        },
        active,
    )


class Percentiles(Aggregate):
    """``percentile_cont`` at p50, p95 and p99 in one sort (an array of ms)."""

    function = "percentile_cont"
    template = "%(function)s(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = ArrayField(FloatField())


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


class _AmountOfGroup(Func):
    """The amount of the row's group in ``amounts`` (keyed by the values of ``columns``),
    0 when absent: a lookup in arrays bound as parameters. It depends on the GROUP BY
    columns only, so it is computed per group and is not itself grouped by."""

    def __init__(self, columns: Sequence[str], amounts: dict[Any, Decimal]) -> None:
        super().__init__(*(F(column) for column in columns), output_field=SUM_FIELD)
        self.amounts = amounts

    def as_sql(
        self,
        compiler: Any,
        connection: Any,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> tuple[str, tuple[Any, ...]]:
        columns, params = [], []
        for expression in self.get_source_expressions():
            sql, column_params = compiler.compile(expression)
            columns.append(sql)
            params.extend(column_params)
        keys = list(self.amounts)
        arrays = [[key[n] for key in keys] for n in range(len(columns))]
        names = [f"k{n}" for n in range(len(columns))]
        unnest = ", ".join(["%s::text[]"] * len(columns) + ["%s::numeric[]"])
        match = " AND ".join(f"x.{name} = {sql}" for name, sql in zip(names, columns, strict=True))
        # Column names compiled by Django; every value is bound.
        sql = f"COALESCE((SELECT x.amount FROM unnest({unnest}) AS x({', '.join(names)}, amount) WHERE {match}), 0)"  # noqa: E501, S608
        return sql, (*arrays, list(self.amounts.values()), *params)

    def get_group_by_cols(self) -> list[Any]:
        return []


def models_grouped(environment: Environment, query: TableQuery) -> QuerySet[Any]:
    """Per (provider, model) sums; events that named no model are not a model.

    A table of models is short (tens of rows), so every row carries its ``lastSeen``
    probe here, whatever the sort.
    """
    rollups = rollups_in(environment, query.window).exclude(model="")
    if query.search:
        rollups = rollups.filter(Q(model__icontains=query.search) | Q(provider=query.search))
    measures = _measures()
    extra = window_extra(environment, query.window).by_model()
    if extra:
        measures["revenue"] = measures["revenue"] + _AmountOfGroup(("provider", "model"), extra)
    return (
        rollups.values("provider", "model")
        .annotate(
            **measures,
            last_bucket=Max("bucket_start"),
            customers=Count("customer_id", distinct=True),
            features=Count("feature_id", distinct=True),
            input_tokens=_int_sum("input_tokens"),
            output_tokens=_int_sum("output_tokens"),
            duration_sum=_int_sum("duration_ms_sum"),
            duration_count=_int_sum("duration_count"),
        )
        .annotate(**_derived())
        # A separate annotate(): next to the aggregates above, Django would GROUP BY the
        # subquery, running it once per rollup row instead of once per model.
        .annotate(
            last_seen=_last_event(environment, query.window, model="model", provider="provider")
        )
        .order_by(*_order_by(query.sort, ("provider", "model")))
    )


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
        latencies = (
            scoped(Event, environment)
            .filter(
                model__in={model for _, model in timed},
                occurred_at__gte=window.start,
                occurred_at__lt=window.end,
                duration_ms__isnull=False,
            )
            .values("provider", "model")
            .annotate(p=Percentiles("duration_ms"))
            .order_by()
        )
        for latency in latencies:
            row = timed.get((latency["provider"], latency["model"]))
            if row is not None and latency["p"]:
                p50, p95, p99 = latency["p"]
                row.latency_ms = (p50, p95, p99)
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


# --- Raw events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventFilters:
    window: Window | None = None
    customer_reference_id: str | None = None
    feature_key: str | None = None
    model: str | None = None
    provider: str | None = None
    trace_id: str | None = None
    event_name: str | None = None
    cost_source: str | None = None


COST_SOURCES = tuple(CostSource.values)


def events_matching(environment: Environment, filters: EventFilters) -> QuerySet[Event]:
    """The environment's events that pass ``filters`` (unordered).

    Customer and feature are resolved to ids first (one small lookup each), so
    the event scan can use the ``(environment, customer|feature, occurred_at)``
    indexes; an unknown reference matches nothing.
    """
    events = scoped(Event, environment)
    if filters.customer_reference_id is not None:
        customer_id = (
            scoped(Customer, environment)
            .filter(reference_id=filters.customer_reference_id)
            .values_list("id", flat=True)
            .first()
        )
        if customer_id is None:
            return events.none()
        events = events.filter(customer_id=customer_id)
    if filters.feature_key is not None:
        feature_id = (
            scoped(Feature, environment)
            .filter(key=filters.feature_key)
            .values_list("id", flat=True)
            .first()
        )
        if feature_id is None:
            return events.none()
        events = events.filter(feature_id=feature_id)
    if filters.window is not None:
        events = events.filter(
            occurred_at__gte=filters.window.start, occurred_at__lt=filters.window.end
        )
    if filters.model is not None:
        events = events.filter(model=filters.model)
    if filters.provider is not None:
        events = events.filter(provider=filters.provider)
    if filters.trace_id is not None:
        events = events.filter(trace_id=filters.trace_id)
    if filters.event_name is not None:
        events = events.filter(event_name=filters.event_name)
    if filters.cost_source is not None:
        events = events.filter(cost_source=filters.cost_source)
    return events


@dataclass(slots=True)
class EventNames:
    """Reference ids and feature keys of a set of events (events carry only ids)."""

    customers: dict[uuid.UUID, str]
    features: dict[uuid.UUID, str]

    def customer(self, event: Event) -> str:
        return self.customers.get(event.customer_id, "")

    def feature(self, event: Event) -> str:
        return self.features.get(event.feature_id, "")


def event_names(environment: Environment, events: list[Event]) -> EventNames:
    """Two queries, whatever the number of events."""
    customer_ids = {event.customer_id for event in events}
    feature_ids = {event.feature_id for event in events}
    return EventNames(
        customers=dict(
            scoped(Customer, environment)
            .filter(id__in=customer_ids)
            .values_list("id", "reference_id")
        )
        if customer_ids
        else {},
        features=dict(
            scoped(Feature, environment).filter(id__in=feature_ids).values_list("id", "key")
        )
        if feature_ids
        else {},
    )


def newest_first(
    events: QuerySet[Event], *, before: tuple[dt.datetime, int] | None, limit: int
) -> list[Event]:
    """Up to ``limit`` events ordered by (occurred_at, id) descending, after a keyset cursor."""
    events = events.order_by("-occurred_at", "-id")
    if before is not None:
        at, pk = before
        # The plain bound lets the (environment, occurred_at, id) index start the scan at
        # the cursor (and prunes newer partitions); the OR alone would be a filter that
        # reads every newer row first.
        events = events.filter(
            Q(occurred_at__lt=at) | Q(occurred_at=at, id__lt=pk), occurred_at__lte=at
        )
    return list(events[:limit])


def events_batches(
    environment: Environment, filters: EventFilters, *, batch_size: int = 1000
) -> Iterator[tuple[list[Event], EventNames]]:
    """Every matching event, newest first, in keyset batches (constant memory for exports)."""
    events = events_matching(environment, filters)
    before: tuple[dt.datetime, int] | None = None
    while True:
        batch = newest_first(events, before=before, limit=batch_size)
        if not batch:
            return
        yield batch, event_names(environment, batch)
        if len(batch) < batch_size:
            return
        before = (batch[-1].occurred_at, batch[-1].id)


@dataclass(slots=True)
class Trace:
    trace_id: str
    events: list[Event]
    names: EventNames
    event_count: int
    cost: Decimal
    revenue: Decimal
    unpriced: int
    started_at: dt.datetime
    ended_at: dt.datetime
    duration_ms_sum: int

    @property
    def margin(self) -> Decimal:
        return self.revenue - self.cost

    @property
    def span_ms(self) -> int:
        return int((self.ended_at - self.started_at) / dt.timedelta(milliseconds=1))

    @property
    def truncated(self) -> bool:
        return self.event_count > len(self.events)


def trace_get(environment: Environment, trace_id: str) -> Trace:
    """A trace's events in time order with totals over all of them; 404 when it has none.

    ``occurredAt`` is taken as an event's start and ``occurredAt + durationMs`` as
    its end, so the span runs from the first start to the last end.
    """
    if not trace_id or len(trace_id) > 255 or "\x00" in trace_id:
        raise NotFound("No such trace.")
    events = scoped(Event, environment).filter(trace_id=trace_id)
    head = events.aggregate(
        count=Count("id"),
        cost=_dec_sum("cost_usd"),
        revenue=_dec_sum("revenue_usd"),
        unpriced=Count("id", filter=Q(cost_usd__isnull=True)),
        started=Min("occurred_at"),
        ended=Max(
            RawSQL("occurred_at + COALESCE(duration_ms, 0) * interval '1 millisecond'", []),
            output_field=DateTimeField(),
        ),
        duration=_int_sum("duration_ms"),
    )
    if not head["count"]:
        raise NotFound("No such trace.")
    listed = list(events.order_by("occurred_at", "id")[:TRACE_MAX_EVENTS])
    return Trace(
        trace_id=trace_id,
        events=listed,
        names=event_names(environment, listed),
        event_count=head["count"],
        cost=head["cost"],
        revenue=head["revenue"],
        unpriced=head["unpriced"],
        started_at=head["started"],
        ended_at=head["ended"],
        duration_ms_sum=head["duration"],
    )
