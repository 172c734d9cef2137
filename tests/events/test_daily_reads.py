"""The analytics overview and customer table read the daily rollups for whole days
and the hourly one for the edge hours: their answers must equal, value for value
and type for type, what the hourly rollup alone gives (the reference below is
the hourly-only implementation they replaced), for windows that are whole days,
partial days, less than a day, or not even on the hour."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Count, DateTimeField, F, Max, OuterRef, Q, Subquery, Value
from django.db.models.functions import Concat, TruncDate
from django.utils import timezone

from apps.analytics import selectors
from apps.analytics.params import TableQuery, Window
from apps.core.tenancy import scoped
from apps.customers.selectors import customers_search
from apps.events.models import Event, HourlyRollup
from tests.events.conftest import reference_derived, reference_measures, rollup_mismatches

pytestmark = pytest.mark.django_db

INGEST = "/api/events/ingest"


def _rollups(environment: Any, window: Window) -> Any:
    return scoped(HourlyRollup, environment).filter(
        bucket_start__gte=window.start, bucket_start__lt=window.end
    )


def reference_overview(environment: Any, window: Window) -> selectors.Overview:
    rollups = _rollups(environment, window)
    head = rollups.aggregate(
        **reference_measures(),
        customers=Count("customer_id", distinct=True),
        features=Count("feature_id", distinct=True),
        models=Count(Concat("provider", Value("/"), "model"), distinct=True, filter=~Q(model="")),
    )
    by_day = {
        row["day"]: selectors.Totals.of(row)
        for row in rollups.annotate(day=TruncDate("bucket_start", tzinfo=dt.UTC))
        .values("day")
        .annotate(**reference_measures())
        .order_by("day")
    }
    return selectors.Overview(
        window=window,
        totals=selectors.Totals.of(head),
        customers=head["customers"],
        features=head["features"],
        models=head["models"],
        daily=[selectors.DayTotals(d, by_day.get(d, selectors.Totals())) for d in window.days()],
    )


def reference_customers(environment: Any, query: TableQuery) -> list[dict[str, Any]]:
    rollups = _rollups(environment, query.window)
    if query.search:
        rollups = rollups.filter(
            customer_id__in=customers_search(environment, query.search).values("id")
        )
    grouped = (
        rollups.values("customer_id")
        .annotate(**reference_measures(), last_bucket=Max("bucket_start"))
        .annotate(**reference_derived())
    )
    if query.sort.lstrip("-") == "lastSeen":
        grouped = grouped.annotate(
            last_seen=Subquery(
                scoped(Event, environment)
                .filter(
                    customer_id=OuterRef("customer_id"),
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
    return list(grouped.order_by(order, "customer_id"))


def exact(value: Any) -> Any:
    """Values compared with their type and (for Decimals) their exponent."""
    if isinstance(value, dict):
        return {k: exact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [exact(v) for v in value]
    if isinstance(value, selectors.Totals):
        return exact([value.events, value.cost, value.revenue, value.unpriced, value.usage_units])
    if isinstance(value, selectors.DayTotals):
        return [value.date, exact(value.totals)]
    return (type(value).__name__, str(value))


@pytest.fixture
def dataset(tenant, catalog):
    """~600 events over 6 days, 12 customers (ties in cost on purpose), 4 features,
    priced, unpriced and explicit costs, revenue on some."""
    rng = random.Random(11)
    now = timezone.now().replace(microsecond=0)
    api = tenant.api()
    for batch in range(3):
        events = []
        for n in range(200):
            at = now - dt.timedelta(minutes=rng.randint(0, 6 * 24 * 60))
            event: dict[str, Any] = {
                "idempotencyKey": f"k-{batch}-{n}",
                "eventName": "chat",
                "customerReferenceId": f"cus_{rng.randint(1, 12)}",
                "featureKey": rng.choice(["chat", "search", "agent", "summary"]),
                "occurredAt": at.isoformat(),
            }
            kind = rng.random()
            if kind < 0.5:
                event |= {"model": rng.choice(["gpt-4o", "gpt-4o-mini"])}
                event |= {"inputTokens": rng.randint(10, 900), "outputTokens": rng.randint(1, 90)}
            elif kind < 0.6:
                event |= {"model": "acme-llm", "inputTokens": 5, "outputTokens": 5}
            else:
                event |= {"costAmount": rng.choice(["0.1", "0.25", "0.000000000001"])}
            if rng.random() < 0.4:
                event["revenueAmount"] = rng.choice(["0", "0.3", "1.5"])
            events.append(event)
        response = api.post(INGEST, {"events": events}, format="json")
        assert response.status_code == 200, response.content
    assert rollup_mismatches() == []
    return now


def windows(now: dt.datetime) -> list[Window]:
    rng = random.Random(5)
    midnight = now.replace(hour=0, minute=0, second=0)
    out = [
        Window(midnight - dt.timedelta(days=30), midnight + dt.timedelta(days=1)),  # default
        Window(midnight - dt.timedelta(days=3), midnight),  # whole days
        Window(midnight - dt.timedelta(hours=5), midnight + dt.timedelta(hours=3)),  # < 1 day
        Window(midnight + dt.timedelta(hours=1), midnight + dt.timedelta(hours=2)),  # 1 hour
        Window(midnight - dt.timedelta(days=2, hours=7), now),  # edges both sides
    ]
    for _ in range(12):
        start = now - dt.timedelta(minutes=rng.randint(0, 7 * 24 * 60))
        out.append(Window(start, start + dt.timedelta(minutes=rng.randint(1, 6 * 24 * 60))))
    return out


def test_overview_equals_the_hourly_rollup_alone(tenant, dataset):
    for window in windows(dataset):
        for w in (window, window.to_hours()):
            got, want = selectors.overview(tenant.test, w), reference_overview(tenant.test, w)
            assert exact(got.totals) == exact(want.totals), w
            assert (got.customers, got.features, got.models) == (
                want.customers,
                want.features,
                want.models,
            ), w
            assert exact(got.daily) == exact(want.daily), w
    # Nothing of another environment.
    other = selectors.overview(tenant.live, windows(dataset)[0])
    assert other.totals.events == 0 and other.customers == 0


@pytest.mark.parametrize("search", ["", "cus_1"])
def test_customer_table_equals_the_hourly_rollup_alone(tenant, dataset, search):
    for window in windows(dataset)[:8]:
        w = window.to_hours()
        for sort in [*selectors.SORTS, *(f"-{name}" for name in selectors.SORTS)]:
            query = TableQuery(sort=sort, search=search, window=w)
            want = reference_customers(tenant.test, query)
            got = selectors.customers_grouped(tenant.test, query)[0:1000]
            assert exact(got) == exact(want), (w, sort)
            # Pages and the streamed export cut the same order.
            assert exact(selectors.customers_grouped(tenant.test, query)[2:5]) == exact(want[2:5])
            streamed = list(selectors.customers_grouped(tenant.test, query).iterator(chunk_size=4))
            assert exact(streamed) == exact(want)


def test_customer_rows_keep_their_last_active_hour(tenant, dataset):
    query = TableQuery(sort="-cost", search="", window=windows(dataset)[0].to_hours())
    table = selectors.customer_table(tenant.test, query, limit=100)
    want = {row["customer_id"]: row for row in reference_customers(tenant.test, query)}
    assert len(table.rows) == len(want) > 0
    for row in table.rows:
        assert row.last_bucket == want[row.customer.pk]["last_bucket"]
        assert row.last_seen is not None and row.last_seen >= row.last_bucket
        assert row.totals.cost == want[row.customer.pk]["cost"] >= Decimal(0)
