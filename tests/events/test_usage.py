"""The ledger's read API (apps.events.usage): sums over any window, at any grain, equal
a brute-force sum of the raw events whose occurredAt falls in the window (the rollups
serve whole days and hours, the events the edges), and never count another
environment's events."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from apps.events import usage
from apps.events.models import NO_API_KEY, Event
from apps.events.usage import Grain, Measure, Measures, UsageFilter, UsageKey
from apps.events.usage.sql import Source, split
from tests.events.conftest import rollup_mismatches
from tests.factories import make_key

pytestmark = pytest.mark.django_db

INGEST = "/api/events/ingest"

GRAINS: list[tuple[Grain, ...]] = [
    (),
    (Grain.CUSTOMER,),
    (Grain.FEATURE,),
    (Grain.MODEL,),
    (Grain.CUSTOMER, Grain.FEATURE),
    (Grain.DAY,),
    (Grain.HOUR,),
    (Grain.FEATURE, Grain.MODEL, Grain.DAY),
    (Grain.CUSTOMER, Grain.DAY),
    (Grain.API_KEY,),
    (Grain.API_KEY, Grain.FEATURE, Grain.HOUR),
]


def _ingest(api: Any, rng: random.Random, now: dt.datetime, prefix: str, count: int) -> None:
    events = []
    for n in range(count):
        at = now - dt.timedelta(
            seconds=rng.randint(0, 4 * 24 * 3600), microseconds=rng.randint(0, 999_999)
        )
        event: dict[str, Any] = {
            "idempotencyKey": f"{prefix}-{n}",
            "eventName": "chat",
            "customerReferenceId": f"cus_{rng.randint(1, 6)}",
            "featureKey": rng.choice(["chat", "search", "agent"]),
            "occurredAt": at.isoformat(),
            "usageUnits": rng.choice(["1", "2.5", "0.000000000001"]),
        }
        kind = rng.random()
        if kind < 0.5:
            event |= {"model": rng.choice(["gpt-4o", "gpt-4o-mini"])}
            event |= {"inputTokens": rng.randint(10, 900), "outputTokens": rng.randint(1, 90)}
        elif kind < 0.65:
            event |= {"model": "acme-llm", "inputTokens": 5, "outputTokens": 5}  # unpriced
        else:
            event |= {"costAmount": rng.choice(["0.1", "0.25", "0.000000000001"])}
        if rng.random() < 0.4:
            event["revenueAmount"] = rng.choice(["0", "0.3", "1.5"])
        if rng.random() < 0.5:
            event["durationMs"] = rng.randint(1, 5000)
        events.append(event)
    response = api.post(INGEST, {"events": events}, format="json")
    assert response.status_code == 200, response.content


@pytest.fixture
def ledger(tenant, outsider, catalog):
    """~360 events over 4 days in the tenant's test environment, and events in its live
    environment and in another organization at the same times (which must never count)."""
    rng = random.Random(7)
    now = timezone.now()
    # Two writing keys: the secret key and an SDK key, so the API-key grain has groups.
    sdk_key = make_key(tenant.test, "obs", scopes=["events.write"]).plaintext
    for batch, key in enumerate((tenant.sk_test, sdk_key)):
        _ingest(tenant.api(key), rng, now, f"t{batch}", 180)
    _ingest(tenant.api(tenant.sk_live), rng, now, "live", 80)
    _ingest(outsider.api(), rng, now, "other", 80)
    assert rollup_mismatches() == []
    return now


def _key(event: Event, grains: tuple[Grain, ...]) -> UsageKey:
    values: dict[str, Any] = {}
    at = event.occurred_at.astimezone(dt.UTC)
    for grain in grains:
        if grain is Grain.CUSTOMER:
            values["customer_id"] = event.customer_id
        elif grain is Grain.FEATURE:
            values["feature_id"] = event.feature_id
        elif grain is Grain.MODEL:
            values |= {"model": event.model, "provider": event.provider}
        elif grain is Grain.DAY:
            values["day"] = at.replace(hour=0, minute=0, second=0, microsecond=0)
        elif grain is Grain.HOUR:
            values["hour"] = at.replace(minute=0, second=0, microsecond=0)
        elif grain is Grain.API_KEY:
            values["api_key_id"] = event.api_key_id or NO_API_KEY
    return UsageKey(**values)


def _measures_of(event: Event) -> Measures:
    return Measures(
        event_count=1,
        usage_units=event.usage_units,
        input_tokens=event.input_tokens or 0,
        output_tokens=event.output_tokens or 0,
        cache_read_tokens=event.cache_read_tokens or 0,
        cache_write_tokens=event.cache_write_tokens or 0,
        reasoning_tokens=event.reasoning_tokens or 0,
        cost_usd=event.cost_usd or Decimal(0),
        revenue_usd=event.revenue_usd or Decimal(0),
        unpriced_count=int(event.cost_usd is None),
        revenue_count=int(event.revenue_usd is not None),
        duration_ms_sum=event.duration_ms or 0,
        duration_count=int(event.duration_ms is not None),
    )


def brute_force(
    environment: Any,
    start: dt.datetime,
    end: dt.datetime,
    grains: tuple[Grain, ...],
    filters: UsageFilter = usage.NO_FILTER,
) -> dict[UsageKey, Measures]:
    out: dict[UsageKey, Measures] = {}
    events = Event.objects.filter(
        environment=environment, occurred_at__gte=start, occurred_at__lt=end
    )
    for event in events:
        if filters.customer_ids is not None and event.customer_id not in filters.customer_ids:
            continue
        if filters.feature_ids is not None and event.feature_id not in filters.feature_ids:
            continue
        if filters.models is not None and event.model not in filters.models:
            continue
        if filters.api_key_ids is not None and event.api_key_id not in filters.api_key_ids:
            continue
        key = _key(event, grains)
        out[key] = out.get(key, Measures()) + _measures_of(event)
    return out


def windows(now: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """Whole days, whole hours, within one hour, across midnights, at odd microseconds."""
    rng = random.Random(3)
    midnight = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    out = [
        (midnight - dt.timedelta(days=5), midnight + dt.timedelta(days=1)),
        (midnight - dt.timedelta(days=2), midnight),
        (midnight - dt.timedelta(hours=30), midnight - dt.timedelta(hours=2)),
        (
            midnight - dt.timedelta(hours=3, minutes=17),
            midnight - dt.timedelta(hours=3, minutes=2),
        ),
        (midnight - dt.timedelta(days=2, hours=7, seconds=13), now),
        (now, now),
    ]
    for _ in range(10):
        start = now - dt.timedelta(microseconds=rng.randint(0, 5 * 24 * 3600 * 10**6))
        length = dt.timedelta(microseconds=rng.randint(1, 3 * 24 * 3600 * 10**6))
        out.append((start, start + length))
    return out


def _as_dict(rows: list[usage.UsageRow]) -> dict[UsageKey, Measures]:
    return {row.key: row.measures for row in rows}


def test_sums_equal_the_raw_events_at_every_grain_and_window(tenant, ledger):
    for (start, end), grains in itertools.product(windows(ledger), GRAINS):
        got = usage.usage(tenant.test, start=start, end=end, group_by=grains)
        want = brute_force(tenant.test, start, end, grains)
        if not grains:
            assert got == [usage.UsageRow(UsageKey(), want.get(UsageKey(), Measures()))]
        else:
            assert _as_dict(got) == want, (start, end, grains)
            # Ordered by the grains in the order they were asked for.
            assert [row.key for row in got] == sorted(
                (row.key for row in got),
                key=lambda k: tuple(str(getattr(k, f)) for g in grains for f in g.key_fields),
            )


def test_filters_are_exact_too(tenant, ledger):
    events = list(Event.objects.filter(environment=tenant.test)[:3])
    customers = {events[0].customer_id, events[1].customer_id}
    filters = [
        UsageFilter(customer_ids=customers),
        UsageFilter(feature_ids={events[2].feature_id}),
        UsageFilter(customer_ids={events[0].customer_id}, models={"gpt-4o", ""}),
        UsageFilter(customer_ids=set()),
        UsageFilter(api_key_ids={events[0].api_key_id}),
    ]
    for (start, end), grains, where in itertools.product(
        windows(ledger)[:8], [(), (Grain.FEATURE, Grain.DAY), (Grain.CUSTOMER,)], filters
    ):
        got = usage.usage(tenant.test, start=start, end=end, group_by=grains, filters=where)
        want = brute_force(tenant.test, start, end, grains, where)
        if grains:
            assert _as_dict(got) == want, (start, end, grains, where)
        else:
            assert got[0].measures == want.get(UsageKey(), Measures()), (start, end, where)


def test_another_environments_events_never_count(tenant, outsider, ledger):
    start, end = windows(ledger)[0]
    for environment in (tenant.test, tenant.live, outsider.test, outsider.live):
        totals = usage.usage_totals(environment, start=start, end=end)
        assert totals == brute_force(environment, start, end, ()).get(UsageKey(), Measures())
    assert usage.usage_totals(tenant.live, start=start, end=end).event_count == 80
    assert usage.usage_totals(outsider.live, start=start, end=end) == Measures()
    # Another environment's customer, named as a filter, matches nothing here.
    foreign = Event.objects.filter(environment=outsider.test).first()
    assert foreign is not None
    totals = usage.usage_totals(
        tenant.test, start=start, end=end, filters=UsageFilter(customer_ids={foreign.customer_id})
    )
    assert totals == Measures()


def test_customer_windows_are_exact_per_window(tenant, ledger):
    rng = random.Random(9)
    customers = sorted({e.customer_id for e in Event.objects.filter(environment=tenant.test)})
    listed = []
    for n, (start, end) in enumerate(windows(ledger)):
        customer = rng.choice(customers)
        listed.append(usage.CustomerWindow(n, customer, start, end))
    measures = (Measure.USAGE_UNITS, Measure.COST_USD, Measure.REVENUE_USD)
    for grains in [(Grain.FEATURE,), (Grain.FEATURE, Grain.MODEL), (Grain.FEATURE, Grain.DAY)]:
        got = usage.customer_window_sums(tenant.test.pk, listed, group_by=grains, measures=measures)
        for window in listed:
            want = brute_force(
                tenant.test,
                window.start,
                window.end,
                grains,
                UsageFilter(customer_ids={window.customer_id}),
            )
            assert got[window.key] == {
                key: {
                    Measure.USAGE_UNITS: m.usage_units,
                    Measure.COST_USD: m.cost_usd,
                    Measure.REVENUE_USD: m.revenue_usd,
                }
                for key, m in want.items()
            }, (window, grains)
    # Another environment's id sees none of them.
    other = usage.customer_window_sums(tenant.live.pk, listed, measures=measures)
    assert all(sums == {} for sums in other.values())


def test_units_parts_add_up_to_the_window(tenant, ledger):
    from django.db import connection

    event = Event.objects.filter(environment=tenant.test).first()
    assert event is not None
    for start, end in windows(ledger):
        parts = usage.units_parts(
            tenant.test.pk,
            customer_id=event.customer_id,
            feature_id=event.feature_id,
            start=start,
            end=end,
        )
        total = Decimal(0)
        with connection.cursor() as cursor:
            for sql, params in parts:
                cursor.execute(sql, ["label", *params])
                for label, value in cursor.fetchall():
                    assert label == "label"
                    total += value or 0
        want = brute_force(
            tenant.test,
            start,
            end,
            (),
            UsageFilter(customer_ids={event.customer_id}, feature_ids={event.feature_id}),
        ).get(UsageKey(), Measures())
        assert total == want.usage_units, (start, end)


def test_split_covers_each_instant_once_and_prefers_the_daily_rollups():
    at = dt.datetime(2026, 3, 4, 22, 30, 5, 7, tzinfo=dt.UTC)
    segments = split(at, at + dt.timedelta(days=2, hours=3), daily=Source.DAILY_CUSTOMER)
    assert [(s.source, s.start, s.end) for s in segments] == [
        (Source.EVENTS, at, dt.datetime(2026, 3, 4, 23, tzinfo=dt.UTC)),
        (
            Source.HOURLY,
            dt.datetime(2026, 3, 4, 23, tzinfo=dt.UTC),
            dt.datetime(2026, 3, 5, tzinfo=dt.UTC),
        ),
        (
            Source.DAILY_CUSTOMER,
            dt.datetime(2026, 3, 5, tzinfo=dt.UTC),
            dt.datetime(2026, 3, 7, tzinfo=dt.UTC),
        ),
        (
            Source.HOURLY,
            dt.datetime(2026, 3, 7, tzinfo=dt.UTC),
            dt.datetime(2026, 3, 7, 1, tzinfo=dt.UTC),
        ),
        (
            Source.EVENTS,
            dt.datetime(2026, 3, 7, 1, tzinfo=dt.UTC),
            at + dt.timedelta(days=2, hours=3),
        ),
    ]
    assert split(at, at, daily=None) == []
    assert [s.source for s in split(at, at + dt.timedelta(minutes=20), daily=None)] == [
        Source.EVENTS
    ]


def test_grains_are_checked():
    with pytest.raises(ValueError, match="repeated"):
        usage.rows_sql(
            "env", start=timezone.now(), end=timezone.now(), group_by=(Grain.DAY, Grain.DAY)
        )
    with pytest.raises(ValueError, match="at least one measure"):
        usage.customer_window_sums("env", [], measures=())
