"""The customers table, its tops and one customer's page."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any

from apps.analytics.params import TableQuery, Window
from apps.core.tenancy import scoped
from apps.customers.models import Customer
from apps.customers.selectors import customer_get, customers_search
from apps.events import usage as ledger
from apps.events.selectors import (
    last_event_at,
    last_event_subquery,
)
from apps.events.usage import Grain, UsageFilter
from apps.features.models import Feature

from .tables import (
    ModelSlice,
    Tops,
    _chunks,
    _GroupedRows,
    _page,
    _table_grouped,
    _tops,
)
from .totals import (
    EXACT_DIGITS,
    ZERO,
    Totals,
    window_extra,
    window_hours,
)

if TYPE_CHECKING:
    from apps.accounts.models import Environment


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

    @property
    def unattributed_revenue(self) -> Decimal:
        """Revenue of the customer that no feature of the breakdown carries (a base fee
        in a window without usage: docs/revenue.md); never lost, shown on its own."""
        with localcontext(prec=EXACT_DIGITS):
            return self.totals.revenue - sum((f.totals.revenue for f in self.features), ZERO)


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
