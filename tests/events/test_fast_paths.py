"""The hot path's shortcuts give exactly what the general code gives.

* ``parse_event`` tries ``_parse_plain`` (common, valid events) before the full
  validation; both must agree on every input, valid or not.
* ``BatchPricer`` resolves (model, provider) once per batch; it must price
  every event exactly as ``price_event`` does, overrides included.
* Text UTF-8 cannot carry (lone surrogates) is a 400, never a 500.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from apps.events.models import Event
from apps.events.prices import BatchPricer, price_event
from apps.events.validation import _parse_full, parse_event
from apps.pricing.models import PriceVersion
from apps.pricing.services import override_create
from tests.events.conftest import event_count, rollup_mismatches

CLIENT_EVENTS = "/api/v1/client/events"
INGEST = "/api/events/ingest"

NOW = dt.datetime(2026, 3, 10, 12, 30, tzinfo=dt.UTC)

# Per field: values a caller might send, valid or not.
POOLS: dict[str, list[Any]] = {
    "eventName": ["chat", "  ", "", 12, None, "x" * 256, "é-name", "a\x00b", "\ud800"],
    "customerReferenceId": ["cus_1", "cus 2", None, "", ["x"], "ü", "c" * 255],
    "featureKey": ["ai_chat", "k" * 128, "k" * 129, None, " ", 3],
    "idempotencyKey": ["k-1", None, "", "  ", 5, "k" * 256, "clé"],
    "eventIdempotencyKey": [None, None, "e-1", "", 1.5],
    "model": ["gpt-4o", "GPT-4o ", None, "", "acme-llm", 7, "m" * 256],
    "modelProvider": ["openai", "OpenAI", None, "", "  ", 1],
    "inputTokens": [1000, 0, None, -1, Decimal("10.0"), Decimal("1.5"), True, "12", 10**16],
    "outputTokens": [50, None, 0, Decimal("3"), -2, 10**15],
    "cacheReadTokens": [None, 10, 2000, Decimal("4")],
    "cacheWriteTokens": [None, 5, 1001],
    "reasoningTokens": [None, 10, 60],
    "usageUnits": [None, Decimal("2.5"), 3, "4.25", " 4 ", "1e2", "-1", "NaN", True, 10**12],
    "costAmount": [None, "0.05", Decimal("0.0000000000005"), 0, "1_000", "Infinity", "1e13"],
    "revenueAmount": [None, "0.2", Decimal("1.234567890123456"), [1], "-0", "0e5"],
    "durationMs": [None, 120, -1, 2**31, Decimal("5.0"), "9"],
    "occurredAt": [
        None,
        "2026-03-10T11:00:00Z",
        "2026-03-10T11:00:00",
        "2026-03-10T14:00:00+02:00",
        " 2026-03-10T11:00:00Z ",
        "2026-03-10T12:40:00Z",
        "1999-12-31T23:59:59Z",
        "yesterday",
        5,
    ],
    "traceId": [None, "tr_1", "", 9],
    "flowId": [None, "flow_1"],
    "meta": [None, {}, {"a": 1, "b": [Decimal("0.1"), "x"]}, "str", {"k": "\ud800"}, {"d": {}}],
    "costInput": [None, {}, {"model": "gpt-4o", "inputTokens": 20}, "gpt-4o", {"outputTokens": -5}],
}


def _comparable(result: tuple[Any, dict[str, list[str]]]) -> Any:
    event, errors = result
    if event is None:
        return ("errors", errors)
    fields = dataclasses.asdict(event)
    # Decimal equality ignores the exponent; the stored text must match too.
    return ("event", {k: (str(v) if isinstance(v, Decimal) else v) for k, v in fields.items()})


class TestPlainValidationAgreesWithFull:
    def test_random_events_valid_and_invalid(self):
        rng = random.Random(20261123)
        for _ in range(4000):
            raw = {name: rng.choice(pool) for name, pool in POOLS.items() if rng.random() < 0.7}
            raw = {k: v for k, v in raw.items() if not (v is None and rng.random() < 0.5)}
            override = rng.choice([None, None, "hdr-key"])
            fast = parse_event(raw, now=NOW, idempotency_key_override=override)
            full = _parse_full(raw, now=NOW, idempotency_key_override=override)
            assert _comparable(fast) == _comparable(full), raw

    def test_a_plain_valid_event(self):
        raw = {
            "idempotencyKey": "k",
            "eventName": "chat",
            "customerReferenceId": "cus_1",
            "featureKey": "ai_chat",
            "model": "gpt-4o",
            "inputTokens": 100,
            "outputTokens": 10,
            "revenueAmount": "0.25",
            "occurredAt": "2026-03-10T11:00:00Z",
        }
        event, errors = parse_event(raw, now=NOW)
        assert errors == {} and event is not None
        assert event.revenue_usd == Decimal("0.25") and str(event.usage_units) == "1"
        assert _comparable((event, errors)) == _comparable(_parse_full(raw, now=NOW))


MIX = [
    # (model, provider, explicit cost, tokens (in, out, cache read, cache write, reasoning))
    ("gpt-4o", "", None, (1000, 200, None, None, None)),
    ("gpt-4o", "openai", None, (1000, 200, 400, None, None)),
    ("gpt-4o-2024-08-06", "", None, (5000, 10, None, None, None)),
    ("GPT-4o-mini", "", None, (77, 13, None, None, None)),
    ("claude-sonnet-4-20250514", "", None, (9000, 700, 3000, 1000, None)),
    ("claude-sonnet-4-20250514", "anthropic", None, (9000, 700, 3000, 1000, None)),
    ("acme-llm-7", "", None, (1_000_000, 500_000, None, None, None)),
    ("acme-llm-7", "acme", None, (10, 10, None, None, None)),
    ("gpt-4o", "", Decimal("0.125000000000"), (10, 10, None, None, None)),
    ("", "", Decimal("0.5"), (None, None, None, None, None)),
    ("", "openai", None, (10, 10, None, None, None)),
    ("gpt-4o", "", None, (None, None, None, None, None)),
    ("gpt-4o-mini", "", None, (None, 0, None, None, None)),
    ("unknown-model", "openai", None, (10, 10, None, None, None)),
]


def _both(environment_id, pricer: BatchPricer, case: tuple, at: dt.datetime):
    model, provider, cost, tokens = case
    kwargs = {
        "model": model,
        "provider": provider,
        "at": at,
        "explicit_cost": cost,
        "input_tokens": tokens[0],
        "output_tokens": tokens[1],
        "cache_read_tokens": tokens[2],
        "cache_write_tokens": tokens[3],
        "reasoning_tokens": tokens[4],
    }
    return pricer.price(**kwargs), price_event(environment_id=environment_id, **kwargs)


@pytest.mark.django_db
class TestBatchPricerAgreesWithPriceEvent:
    def _check(self, environment) -> None:
        at = timezone.now()
        pricer = BatchPricer(environment.pk)
        for _ in range(2):  # the second round is served from the pricer's plans
            for case in MIX:
                batch, single = _both(environment.pk, pricer, case, at)
                assert batch == single, case
                assert str(batch.cost_usd) == str(single.cost_usd)

    def test_catalog_prices(self, tenant, catalog):
        self._check(tenant.test)

    def test_with_rates_and_discounts(self, tenant, catalog):
        env = tenant.test
        override_create(
            environment=env,
            model="acme-llm-7",
            input_mtok=Decimal("0.3"),
            output_mtok=Decimal("1.1"),
        )
        override_create(environment=env, model="gpt-4o", discount_percent=Decimal("12.5"))
        override_create(environment=env, provider="anthropic", discount_percent=Decimal("20"))
        self._check(env)


class TestEventsWithoutAModelNeedNoCatalog:
    """Usage sent with ``costAmount`` and no model is priced without the catalog: in a fresh
    database ingesting it does not load the whole catalog (seconds), and the events and
    their costs are the same."""

    def test_a_batch_without_models_leaves_the_catalog_unloaded(self, tenant):
        assert not PriceVersion.objects.exists()
        events = [
            {"eventName": "call", "customerReferenceId": "cus_1", "featureKey": "f",
             "usageUnits": "2", "costAmount": "0.25", "idempotencyKey": "no-model-1"},
            {"eventName": "call", "customerReferenceId": "cus_1", "featureKey": "f",
             "idempotencyKey": "no-model-2"},
        ]  # fmt: skip
        response = tenant.api().post(INGEST, {"events": events}, format="json")
        assert response.status_code == 200, response.content
        assert [e["status"] for e in response.json()["events"]] == ["accepted", "accepted"]
        assert not PriceVersion.objects.exists()
        stored = dict(
            Event.objects.filter(environment=tenant.test).values_list("idempotency_key", "cost_usd")
        )
        assert stored == {"no-model-1": Decimal("0.25"), "no-model-2": None}

    def test_the_first_event_with_a_model_loads_it(self, tenant):
        event = {"eventName": "call", "customerReferenceId": "cus_1", "featureKey": "f",
                 "model": "gpt-4o", "inputTokens": 1000, "outputTokens": 10}  # fmt: skip
        response = tenant.api().post(INGEST, {"events": [event]}, format="json")
        assert response.status_code == 200, response.content
        assert PriceVersion.objects.exists()  # the bundled catalog, synced on first use
        stored = Event.objects.get(environment=tenant.test)
        assert stored.cost_source == "catalog" and stored.cost_usd > 0


@pytest.mark.django_db
class TestTextUtf8CannotCarry:
    def test_single_event_with_a_lone_surrogate_is_400(self, tenant):
        body = '{"eventName": "chat\\ud800", "customerReferenceId": "c", "featureKey": "f"}'
        response = tenant.api().post(CLIENT_EVENTS, data=body, content_type="application/json")
        assert response.status_code == 400
        assert "eventName" in response.json()["error"]["fields"]
        assert event_count() == 0

    def test_batch_item_with_a_lone_surrogate_in_meta_is_rejected_alone(self, tenant):
        body = (
            '{"events": ['
            '{"eventName": "a", "customerReferenceId": "c", "featureKey": "f",'
            ' "meta": {"k": "\\udc00"}},'
            '{"eventName": "b", "customerReferenceId": "c", "featureKey": "f"}]}'
        )
        response = tenant.api().post(INGEST, data=body, content_type="application/json")
        assert response.status_code == 207, response.content
        data = response.json()
        assert (data["accepted"], data["rejected"]) == (1, 1)
        assert data["errors"][0]["index"] == 0 and "meta" in data["errors"][0]["fields"]
        assert event_count() == 1
        assert rollup_mismatches() == []
