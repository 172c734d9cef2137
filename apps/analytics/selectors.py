"""Reads of the Observe API. Every function takes the environment first.

Totals never scan raw events: they sum the ledger's rows through its read API
(:mod:`apps.events.usage`: whole days from the daily rollups, the edge hours from
the hourly one), grouping, sorting and cutting pages in SQL around
:func:`apps.events.usage.rows_sql`. Windows are whole hours (see
:meth:`Window.to_hours`): a window reads the hour buckets from the hour at or
after its start to the one at or after its end (:func:`_hours`), so the ledger
reads rollups only. Raw events are read only where the rollups cannot answer,
through :mod:`apps.events.selectors`: the event list and trace, latency
percentiles (bounded by the window) and a precise ``lastSeen`` (one index probe
per row of the page).

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

from django.db import connection
from django.db.models import QuerySet

from apps.core.tenancy import scoped
from apps.customers.models import Customer
from apps.customers.selectors import customer_get, customers_search
from apps.events import usage as ledger

# The event list and trace reads live in the ledger; the Observe API reads them from here.
from apps.events.selectors import (  # noqa: F401 - re-exported
    COST_SOURCES,
    TRACE_MAX_EVENTS,
    EventFilters,
    EventNames,
    Trace,
    event_names,
    events_batches,
    events_matching,
    last_event_at,
    last_event_subquery,
    last_seen_sql,
    latency_percentiles,
    newest_first,
    trace_get,
)
from apps.events.usage import Grain, Measure, UsageFilter, hour_ceil
from apps.features.models import Feature
from apps.features.selectors import features_search

from .params import TableQuery, Window
from .revenue_sources import ExtraRevenue, extra_revenue

if TYPE_CHECKING:
    from apps.accounts.models import Environment

ZERO = Decimal(0)
PCT_QUANTUM = Decimal("0.01")
AMOUNT_QUANTUM = Decimal(1).scaleb(-12)
# Digits for Python arithmetic on sums (numeric(38, 12) columns, and their quotients).
EXACT_DIGITS = 80


# --- Measures --------------------------------------------------------------------------

# The sums every aggregate row carries, in the column order of the ledger rows read.
_MEASURES = (
    Measure.EVENT_COUNT,
    Measure.COST_USD,
    Measure.REVENUE_USD,
    Measure.UNPRICED_COUNT,
    Measure.USAGE_UNITS,
)


@dataclass(slots=True)
class Totals:
    events: int = 0
    cost: Decimal = ZERO
    revenue: Decimal = ZERO
    unpriced: int = 0
    usage_units: Decimal = ZERO

    @classmethod
    def of_measures(cls, measures: ledger.Measures) -> Totals:
        return cls(
            events=measures.event_count,
            cost=measures.cost_usd,
            revenue=measures.revenue_usd,
            unpriced=measures.unpriced_count,
            usage_units=measures.usage_units,
        )

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


def window_hours(window: Window) -> tuple[dt.datetime, dt.datetime]:
    """The hour buckets ``[start, end)`` read for ``window``: from the hour at or after
    its start to the one at or after its end (whole hours: rollups only)."""
    return hour_ceil(window.start), hour_ceil(window.end)


def _rows(
    environment: Environment,
    window: Window,
    group_by: Sequence[Grain],
    *,
    measures: Sequence[Measure] = _MEASURES,
    last_bucket: bool = False,
    filters: UsageFilter = ledger.NO_FILTER,
) -> tuple[str, list[Any]]:
    """SQL and parameters of the window's ledger rows (see :func:`ledger.rows_sql`)."""
    start, end = window_hours(window)
    return ledger.rows_sql(
        environment.pk,
        start=start,
        end=end,
        group_by=group_by,
        measures=measures,
        last_bucket=last_bucket,
        filters=filters,
    )


_MEASURE_SQL = """
    COALESCE(SUM(event_count), 0)::bigint AS events,
    COALESCE(SUM(cost_usd), 0) AS cost,
    COALESCE(SUM(revenue_usd), 0) AS revenue,
    COALESCE(SUM(unpriced_count), 0)::bigint AS unpriced,
    COALESCE(SUM(usage_units), 0) AS usage_units
"""


def _dicts(cursor: Any) -> list[dict[str, Any]]:
    columns = [col.name for col in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def window_extra(environment: Environment, window: Window) -> ExtraRevenue:
    """Revenue beside the events' over the hours the rollups read for ``window`` (the
    hour buckets from the hour at or after its start to the one at or after its end)."""
    return extra_revenue(environment, *window_hours(window))


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
    sums, params = _rows(environment, window, (Grain.DAY,))
    customers, customer_params = _rows(environment, window, (Grain.CUSTOMER,), measures=())
    activity, activity_params = _rows(
        environment, window, (Grain.FEATURE, Grain.MODEL), measures=()
    )
    if customer_count is None:
        counted = f"(SELECT count(*) FROM (SELECT customer_id FROM ({customers}) c GROUP BY 1) g)"  # noqa: S608
    else:
        counted, customer_params = "%s", [customer_count]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (day AT TIME ZONE 'UTC')::date AS day, {_MEASURE_SQL}"  # noqa: S608
            f" FROM ({sums}) r GROUP BY 1",
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
    sums, params = _rows(environment, window, ())
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
        rollups += """
            UNION ALL
            SELECT x.key, 0::bigint, 0::numeric, x.revenue, 0::bigint, 0::numeric,
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


def customers_grouped(environment: Environment, query: TableQuery) -> _GroupedRows:
    """Per-customer sums over the window's rollups, in the query's total order.

    Whole days from the day x customer rollup, the edge hours from the hourly
    one (see :func:`_rows`): the same sums and last active hour as the hourly
    rollup alone gives, from ~24 x fewer rows. A customer with revenue beside its
    events' (:func:`window_extra`) is a row even without events.
    """
    return _table_grouped(
        environment,
        query,
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
        .annotate(
            last_seen=last_event_subquery(environment, window.start, window.end, customer_id="id")
        )
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
    environment: Environment, window: Window, customer_id: uuid.UUID
) -> list[FeatureBreakdown]:
    """One customer's feature x model sums (one GROUP BY), features by cost, models by cost
    within."""
    start, end = window_hours(window)
    rows = ledger.usage(
        environment,
        start=start,
        end=end,
        group_by=(Grain.FEATURE, Grain.MODEL),
        filters=UsageFilter(customer_ids=[customer_id]),
    )
    slices = sorted(
        rows,
        key=lambda row: (
            str(row.key.feature_id),
            -row.measures.cost_usd,
            row.key.model or "",
            row.key.provider or "",
        ),
    )
    names = {
        feature.pk: feature
        for feature in scoped(Feature, environment)
        .filter(id__in={row.key.feature_id for row in slices})
        .only("id", "key", "name")
    }
    features: dict[uuid.UUID, FeatureBreakdown] = {}
    for row in slices:
        feature_id = row.key.feature_id
        assert feature_id is not None  # grouped by feature
        feature = names.get(feature_id)
        entry = features.get(feature_id)
        if entry is None:
            entry = features[feature_id] = FeatureBreakdown(
                feature_id=feature_id,
                key=feature.key if feature else "",
                name=feature.name if feature else "",
            )
        totals = Totals.of_measures(row.measures)
        entry.totals.add(totals)
        entry.models.append(ModelSlice(row.key.model or "", row.key.provider or "", totals))
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
    features = _feature_model_breakdown(environment, window, customer.pk)
    totals = Totals()  # the exact sum of the breakdown (one GROUP BY for both)
    for feature in features:
        totals.add(feature.totals)
    extra = window_extra(environment, window)
    if customer.pk in extra.customers:
        _add_to_breakdown(features, extra.by_feature_model(customer.pk))
        with localcontext(prec=EXACT_DIGITS):
            # All of it, also what no usage could carry (attributed to no feature).
            totals.revenue += extra.customers[customer.pk]
    last_seen = last_event_at(environment, window.start, window.end, customer_id=customer.pk)
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
    rollups, params = _rows(
        environment,
        window,
        (Grain.FEATURE, Grain.MODEL),
        filters=UsageFilter(feature_ids=ids),
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT feature_id, model, provider, {_MEASURE_SQL}
              FROM ({rollups}) r
             GROUP BY 1, 2, 3
             ORDER BY 1, cost DESC, 2, 3
            """,  # noqa: S608 - names are ours, values bound
            params,
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
        .annotate(
            last_seen=last_event_subquery(environment, window.start, window.end, feature_id="id")
        )
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
