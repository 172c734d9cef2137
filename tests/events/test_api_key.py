"""Every event records the API key that wrote it, and the hourly rollup counts per key."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.apikeys import scopes as S
from apps.events.ingest import event_record, events_ingest
from apps.events.models import NO_API_KEY, Event, HourlyRollup
from apps.events.services import events_recost
from apps.pricing.services import override_create
from tests.events.conftest import rollup_mismatches
from tests.factories import make_key

pytestmark = pytest.mark.django_db

CLIENT_EVENTS = "/api/v1/client/events"
INGEST = "/api/events/ingest"


def _event(key: str, **extra: object) -> dict[str, object]:
    return {
        "eventName": "chat",
        "customerReferenceId": "cus_1",
        "featureKey": "chat",
        "costInput": {"model": "gpt-4o", "inputTokens": 1000, "outputTokens": 100},
        "eventIdempotencyKey": key,
        **extra,
    }


def _batch_event(key: str, **extra: object) -> dict[str, object]:
    return {
        "eventName": "chat",
        "customerReferenceId": "cus_1",
        "featureKey": "chat",
        "model": "gpt-4o",
        "inputTokens": 1000,
        "outputTokens": 100,
        "idempotencyKey": key,
        **extra,
    }


def test_single_and_batch_events_record_their_writing_key(tenant, catalog):
    secret = make_key(tenant.test, "sk")
    sdk = make_key(tenant.test, "obs", scopes=[S.EVENTS_WRITE])
    at = timezone.now().replace(minute=5, second=0, microsecond=0) - dt.timedelta(hours=1)

    single = tenant.api(secret.plaintext).post(
        CLIENT_EVENTS, _event("one", occurredAt=at.isoformat()), format="json"
    )
    assert single.status_code == 201, single.content
    batch = tenant.api(sdk.plaintext).post(
        INGEST,
        {"events": [_batch_event(f"b{n}", occurredAt=at.isoformat()) for n in range(3)]},
        format="json",
    )
    assert batch.status_code == 200, batch.content
    assert batch.json()["accepted"] == 3

    by_key = dict(Event.objects.values_list("idempotency_key", "api_key_id"))
    assert by_key == {
        "one": secret.key.pk,
        "b0": sdk.key.pk,
        "b1": sdk.key.pk,
        "b2": sdk.key.pk,
    }
    # Same hour, customer, feature and model: one rollup row per key.
    rows = dict(HourlyRollup.objects.values_list("api_key_id", "event_count"))
    assert rows == {secret.key.pk: 1, sdk.key.pk: 3}
    assert rollup_mismatches() == []


def test_events_no_key_wrote_have_none_and_the_nil_key_in_the_rollup(tenant, catalog):
    event_record(environment=tenant.test, body=_event("product"), api_key_id=None)
    result = events_ingest(
        environment=tenant.test, items=[_batch_event("product-batch")], api_key_id=None
    )
    assert result.accepted == 1
    assert set(Event.objects.values_list("api_key_id", flat=True)) == {None}
    assert set(HourlyRollup.objects.values_list("api_key_id", flat=True)) == {NO_API_KEY}
    assert rollup_mismatches() == []


def test_recosting_moves_each_keys_rollup_row(tenant, catalog):
    first = make_key(tenant.test, "sk")
    second = make_key(tenant.test, "sk")
    unknown = {"model": "acme-llm-7", "inputTokens": 1_000_000, "outputTokens": 500_000}
    for key, name in ((first, "a"), (second, "b"), (first, "c")):
        response = tenant.api(key.plaintext).post(
            CLIENT_EVENTS, _event(name, costInput=unknown), format="json"
        )
        assert response.status_code == 201, response.content
    assert dict(HourlyRollup.objects.values_list("api_key_id", "unpriced_count")) == {
        first.key.pk: 2,
        second.key.pk: 1,
    }
    override_create(
        environment=tenant.test,
        model="acme-llm-7",
        input_mtok=Decimal("0.3"),
        output_mtok=Decimal("1.1"),
    )
    run = events_recost(actor="test", environment_id=tenant.test.pk)
    assert run is not None and run.events_newly_priced == 3
    rows = {
        key: (unpriced, cost)
        for key, unpriced, cost in HourlyRollup.objects.values_list(
            "api_key_id", "unpriced_count", "cost_usd"
        )
    }
    # 1M input x 0.3 + 0.5M output x 1.1 = 0.85 USD per event.
    assert rows == {first.key.pk: (0, Decimal("1.7")), second.key.pk: (0, Decimal("0.85"))}
    assert rollup_mismatches() == []
