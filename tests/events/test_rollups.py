"""Every rollup (hourly, daily per customer, daily per feature x model) equals a fresh
aggregation of the raw events after a mixed workload: batches over several days
and hours, duplicates across and within batches, rejected items, unpriced events
(unknown model, no model, no tokens), explicit costs, revenue, single events,
two environments, then a re-costing that prices the unknown model."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone

from apps.events.models import DailyCustomerRollup, DailyFeatureModelRollup, Event, HourlyRollup
from apps.events.services import events_recost
from apps.pricing.services import override_create
from tests.events.conftest import rollup_mismatches

pytestmark = pytest.mark.django_db

CLIENT_EVENTS = "/api/v1/client/events"
INGEST = "/api/events/ingest"


def _event(rng: random.Random, now: dt.datetime, n: int) -> dict:
    at = now - dt.timedelta(
        days=rng.randint(0, 3), hours=rng.randint(0, 23), minutes=rng.randint(0, 59)
    )
    event: dict = {
        "idempotencyKey": f"k-{n}",
        "eventName": "chat",
        "customerReferenceId": f"cus_{rng.randint(1, 6)}",
        "featureKey": rng.choice(["ai_chat", "search", "summarize"]),
        "occurredAt": min(at, now).isoformat(),
    }
    kind = rng.random()
    if kind < 0.45:
        event |= {"model": rng.choice(["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-20250514"])}
        event |= {"inputTokens": rng.randint(100, 5000), "outputTokens": rng.randint(1, 900)}
        if rng.random() < 0.3:
            event["cacheReadTokens"] = rng.randint(0, event["inputTokens"] // 2)
    elif kind < 0.6:
        event |= {"model": "acme-llm-7", "inputTokens": rng.randint(1, 10**6), "outputTokens": 7}
    elif kind < 0.7:
        event |= {"costAmount": f"0.{rng.randint(1, 99999):05d}"}
    elif kind < 0.8:
        event |= {"model": "gpt-4o", "usageUnits": "3.5"}  # no tokens: unpriced
    # else: no model, no cost: unpriced
    if rng.random() < 0.4:
        event["revenueAmount"] = f"{rng.randint(0, 900) / 1000:.3f}"
    if rng.random() < 0.5:
        event["durationMs"] = rng.randint(10, 9000)
    return event


def test_every_rollup_equals_a_fresh_aggregation_after_a_mixed_workload(tenant, catalog):
    rng = random.Random(7)
    now = timezone.now()
    api_test, api_live = tenant.api(), tenant.api(tenant.sk_live)
    sent: list[dict] = []
    n = 0
    for batch_no in range(6):
        batch = []
        for _ in range(60):
            n += 1
            batch.append(_event(rng, now, n))
        batch += [dict(e) for e in rng.sample(sent, min(len(sent), 8))]  # retries
        batch += [dict(batch[0]), {"eventName": "no customer"}]  # in-batch dup, rejected
        sent += batch[:20]
        api = api_live if batch_no % 3 == 2 else api_test
        response = api.post(INGEST, {"events": batch}, format="json")
        assert response.status_code == 207, response.content
        assert response.json()["duplicates"] >= 1
    for _ in range(10):
        n += 1
        single = _event(rng, now, n)
        body = {k: v for k, v in single.items() if k != "idempotencyKey"}
        body["eventIdempotencyKey"] = single["idempotencyKey"]
        assert api_test.post(CLIENT_EVENTS, body, format="json").status_code == 201
    assert rollup_mismatches() == []

    unpriced_before = Event.objects.filter(cost_usd__isnull=True).count()
    override_create(
        environment=tenant.test,
        model="acme-llm-7",
        input_mtok=Decimal("0.3"),
        output_mtok=Decimal("1.1"),
    )
    run = events_recost(actor="test", environment_id=tenant.test.pk, batch_size=17)
    assert run is not None and run.events_newly_priced > 0
    assert Event.objects.filter(cost_usd__isnull=True).count() < unpriced_before
    assert rollup_mismatches() == []

    # The daily tables are really coarser, and really hold everything.
    total = Event.objects.count()
    for model in (HourlyRollup, DailyCustomerRollup, DailyFeatureModelRollup):
        assert model.objects.aggregate(n=Sum("event_count"))["n"] == total
    assert DailyCustomerRollup.objects.count() < HourlyRollup.objects.count()
    assert DailyFeatureModelRollup.objects.count() < HourlyRollup.objects.count()
    assert set(DailyCustomerRollup.objects.values_list("environment_id", flat=True)) == {
        tenant.test.pk,
        tenant.live.pk,
    }
