"""The feature table, its model breakdown, the overview's comparison totals and its
"top" lists read the daily rollups for whole days and the hourly one for the edge
hours (as the overview and customer table do): their answers must equal, value for
value and type for type, what the hourly rollup alone gives, for windows that are
whole days, partial days, less than a day, or not even on the hour."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db.models import DateTimeField, F, Max, OuterRef, Subquery

from apps.analytics import selectors
from apps.analytics.params import TableQuery, Window
from apps.core.tenancy import scoped
from apps.customers.models import Customer
from apps.events.models import Event, HourlyRollup
from apps.features.selectors import features_search
from tests.events import test_daily_reads
from tests.events.conftest import reference_derived, reference_measures
from tests.events.test_daily_reads import exact, reference_customers, windows

pytestmark = pytest.mark.django_db

# The same ~600 events over 6 days as the overview and customer table comparisons.
dataset = test_daily_reads.dataset

SORTS = [*selectors.SORTS, *(f"-{name}" for name in selectors.SORTS)]


def _rollups(environment: Any, window: Window) -> Any:
    return scoped(HourlyRollup, environment).filter(
        bucket_start__gte=window.start, bucket_start__lt=window.end
    )


def reference_features(environment: Any, query: TableQuery) -> list[dict[str, Any]]:
    """The hourly-only feature table the daily read replaced."""
    rollups = _rollups(environment, query.window)
    if query.search:
        rollups = rollups.filter(
            feature_id__in=features_search(environment, query.search).values("id")
        )
    grouped = (
        rollups.values("feature_id")
        .annotate(**reference_measures(), last_bucket=Max("bucket_start"))
        .annotate(**reference_derived())
    )
    if query.sort.lstrip("-") == "lastSeen":
        grouped = grouped.annotate(
            last_seen=Subquery(
                scoped(Event, environment)
                .filter(
                    feature_id=OuterRef("feature_id"),
                    occurred_at__gte=query.window.start,
                    occurred_at__lt=query.window.end,
                )
                .order_by("-occurred_at")
                .values("occurred_at")[:1],
                output_field=DateTimeField(),
            )
        )
    name = selectors.TABLE_SORTS[query.sort.lstrip("-")]
    order = (
        F(name).desc(nulls_last=True)
        if query.sort.startswith("-")
        else F(name).asc(nulls_last=True)
    )
    return list(grouped.order_by(order, "feature_id"))


def reference_slices(environment: Any, window: Window) -> dict[Any, list[list[Any]]]:
    out: dict[Any, list[list[Any]]] = {}
    for row in (
        _rollups(environment, window)
        .values("feature_id", "model", "provider")
        .annotate(**reference_measures())
        .order_by("feature_id", "-cost", "model", "provider")
    ):
        out.setdefault(row["feature_id"], []).append(
            [row["model"], row["provider"], exact(selectors.Totals.of(row))]
        )
    return out


@pytest.mark.parametrize("search", ["", "sea"])
def test_feature_table_equals_the_hourly_rollup_alone(tenant, dataset, search):
    for window in windows(dataset)[:8]:
        w = window.to_hours()
        for sort in SORTS:
            query = TableQuery(sort=sort, search=search, window=w)
            want = reference_features(tenant.test, query)
            got = selectors.features_grouped(tenant.test, query)[0:1000]
            assert exact(got) == exact(want), (w, sort)
            assert exact(selectors.features_grouped(tenant.test, query)[1:3]) == exact(want[1:3])
            streamed = list(selectors.features_grouped(tenant.test, query).iterator(chunk_size=3))
            assert exact(streamed) == exact(want)


def test_feature_rows_carry_the_hourly_model_breakdown(tenant, dataset):
    for window in windows(dataset):
        w = window.to_hours()
        table = selectors.feature_table(
            tenant.test, TableQuery(sort="-cost", search="", window=w), limit=100
        )
        want = reference_slices(tenant.test, w)
        assert len(table.rows) == len(want)
        for row in table.rows:
            got = [[m.model, m.provider, exact(m.totals)] for m in row.models]
            assert got == want[row.feature.pk], (w, row.feature.key)
            total = selectors.Totals()
            for piece in row.models:
                total.add(piece.totals)
            assert exact(total) == exact(row.totals)


def test_window_totals_equal_the_overviews(tenant, dataset):
    for window in windows(dataset):
        for w in (window, window.to_hours()):
            assert exact(selectors.window_totals(tenant.test, w)) == exact(
                selectors.overview(tenant.test, w).totals
            ), w
    assert selectors.window_totals(tenant.live, windows(dataset)[0]).events == 0


def test_tops_are_the_tables_first_rows(tenant, dataset):
    sorts = ("-cost", "margin", "-events", "marginPct")
    for window in windows(dataset)[:8]:
        w = window.to_hours()
        customers = selectors.customer_tops(tenant.test, w, sorts=sorts, limit=3)
        features = selectors.feature_tops(tenant.test, w, sorts=sorts, limit=3)
        overview = selectors.overview(tenant.test, w)
        assert (customers.count, features.count) == (overview.customers, overview.features)
        for sort in sorts:
            query = TableQuery(sort=sort, search="", window=w)
            want = selectors.customer_table(tenant.test, query, limit=3).rows
            got = customers.rows[sort]
            assert [r.customer.pk for r in got] == [r.customer.pk for r in want], (w, sort)
            assert [exact(r.totals) for r in got] == [exact(r.totals) for r in want]
            assert [(r.last_bucket, r.last_seen) for r in got] == [
                (r.last_bucket, r.last_seen) for r in want
            ]
            want_f = selectors.feature_table(tenant.test, query, limit=3).rows
            got_f = features.rows[sort]
            assert [r.feature.pk for r in got_f] == [r.feature.pk for r in want_f], (w, sort)
            assert [exact(r.totals) for r in got_f] == [exact(r.totals) for r in want_f]
            assert [[(m.model, m.provider, exact(m.totals)) for m in r.models] for r in got_f] == [
                [(m.model, m.provider, exact(m.totals)) for m in r.models] for r in want_f
            ]
    empty = selectors.customer_tops(tenant.live, windows(dataset)[0], sorts=sorts, limit=3)
    assert empty.count == 0 and all(rows == [] for rows in empty.rows.values())
    with pytest.raises(ValueError, match="lastSeen"):
        selectors.customer_tops(tenant.test, windows(dataset)[0], sorts=("lastSeen",), limit=3)


def test_customer_detail_totals_equal_the_hourly_rollup(tenant, dataset):
    for window in windows(dataset)[:8]:
        w = window.to_hours()
        rows = {
            row["customer_id"]: row
            for row in reference_customers(
                tenant.test, TableQuery(sort="-cost", search="", window=w)
            )
        }
        for customer_id, row in rows.items():
            ref = Customer.objects.get(pk=customer_id).reference_id
            detail = selectors.customer_detail(tenant.test, ref, w)
            assert exact(detail.totals) == exact(selectors.Totals.of(row)), (w, ref)


def test_a_window_without_events(tenant, dataset):
    far = Window(dataset - dt.timedelta(days=400), dataset - dt.timedelta(days=300))
    query = TableQuery(sort="-cost", search="", window=far)
    assert selectors.feature_table(tenant.test, query, limit=10).rows == []
    assert selectors.window_totals(tenant.test, far) == selectors.Totals()
    tops = selectors.feature_tops(tenant.test, far, sorts=("-cost",), limit=5)
    assert tops.count == 0 and tops.rows == {"-cost": []}
