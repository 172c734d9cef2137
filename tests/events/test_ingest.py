"""The ingestion pipeline: validation, batches, cost precedence, exact money."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.events.models import Event, HourlyRollup
from apps.events.usage import usage_totals
from apps.pricing.services import override_create
from tests.events.conftest import event_count, rollup_mismatches

pytestmark = pytest.mark.django_db

CLIENT_EVENTS = "/api/v1/client/events"
INGEST = "/api/events/ingest"


def base(**extra):
    return {"eventName": "chat", "customerReferenceId": "cus_1", "featureKey": "ai_chat", **extra}


def post_raw(api, path: str, text: str):
    """Send the JSON text as is (NaN literals, numeric strings, exact decimals)."""
    return api.post(path, data=text, content_type="application/json")


class TestValidation:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"customerReferenceId": "c", "featureKey": "f"}, "eventName"),
            ({"eventName": "x", "featureKey": "f"}, "customerReferenceId"),
            ({"eventName": "x", "customerReferenceId": "c"}, "featureKey"),
            (base(eventName=""), "eventName"),
            (base(eventName=12), "eventName"),
            (base(eventName="x" * 256), "eventName"),
            (base(featureKey="k" * 129), "featureKey"),
            (base(customerReferenceId="a\x00b"), "customerReferenceId"),
            (base(inputTokens=-1), "inputTokens"),
            (base(inputTokens=Decimal("1.5")), "inputTokens"),
            (base(inputTokens=True), "inputTokens"),
            (base(inputTokens="12"), "inputTokens"),
            (base(costInput={"outputTokens": -5}), "costInput.outputTokens"),
            (base(costInput="gpt-4o"), "costInput"),
            (base(outputTokens=10, reasoningTokens=11), "reasoningTokens"),
            (base(inputTokens=10, cacheReadTokens=11), "inputTokens"),
            (base(costAmount="NaN"), "costAmount"),
            (base(costAmount="Infinity"), "costAmount"),
            (base(costAmount="-0.01"), "costAmount"),
            (base(costAmount=Decimal("-1")), "costAmount"),
            (base(costAmount="12abc"), "costAmount"),
            (base(costAmount="1_000"), "costAmount"),
            (base(costAmount=True), "costAmount"),
            (base(costAmount="1e13"), "costAmount"),
            (base(revenueAmount=[1]), "revenueAmount"),
            (base(usageUnits="lots"), "usageUnits"),
            (base(durationMs=Decimal("2.5")), "durationMs"),
            (base(durationMs=2**31), "durationMs"),
            (base(meta=[1, 2]), "meta"),
            (base(meta="x"), "meta"),
            (base(meta={"blob": "x" * (16 * 1024)}), "meta"),
            (base(meta={"bad": "a\x00"}), "meta"),
            (base(occurredAt="yesterday"), "occurredAt"),
            (base(occurredAt=1700000000), "occurredAt"),
            (base(occurredAt="1999-12-31T00:00:00Z"), "occurredAt"),
            (base(traceId=5), "traceId"),
            (base(eventIdempotencyKey={"a": 1}), "eventIdempotencyKey"),
        ],
    )
    def test_bad_field_is_400_with_field_error_and_nothing_stored(self, tenant, body, field):
        response = tenant.api().post(CLIENT_EVENTS, body, format="json")
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert error["code"] == "validation_failed"
        assert field in error["fields"], error
        assert event_count() == 0
        assert not HourlyRollup.objects.exists()
        # The same item in a batch is rejected with the same field error.
        batch = tenant.api().post(INGEST, {"events": [body]}, format="json")
        assert batch.status_code == 400
        assert batch.json()["error"]["errors"][0]["fields"][field]
        assert event_count() == 0

    def test_far_future_occurred_at_is_refused_near_future_accepted(self, tenant):
        now = timezone.now()
        late = (now + dt.timedelta(minutes=10)).isoformat()
        soon = (now + dt.timedelta(minutes=2)).isoformat()
        response = tenant.api().post(CLIENT_EVENTS, base(occurredAt=late), format="json")
        assert response.status_code == 400
        assert "occurredAt" in response.json()["error"]["fields"]
        assert tenant.api().post(
            CLIENT_EVENTS, base(occurredAt=soon), format="json"
        ).status_code == (201)

    def test_nan_literal_is_a_malformed_body(self, tenant):
        text = '{"eventName":"x","customerReferenceId":"c","featureKey":"f","costAmount":NaN}'
        response = post_raw(tenant.api(), CLIENT_EVENTS, text)
        assert response.status_code == 400
        assert event_count() == 0

    def test_unknown_fields_are_ignored_and_nulls_mean_absent(self, tenant):
        body = base(somethingNew={"x": 1}, inputTokens=None, traceId=None, costAmount=None)
        response = tenant.api().post(CLIENT_EVENTS, body, format="json")
        assert response.status_code == 201, response.content
        assert response.json()["inputTokens"] is None

    def test_amounts_accept_numbers_and_decimal_strings(self, tenant):
        text = json.dumps(base(costAmount="0.000000000001", revenueAmount="2"))
        first = post_raw(tenant.api(), CLIENT_EVENTS, text).json()
        assert first["costAmount"] == "0.000000000001"
        assert first["revenueAmount"] == "2"
        text = json.dumps(base()).rstrip("}") + ',"costAmount":1.10,"usageUnits":3}'
        second = post_raw(tenant.api(), CLIENT_EVENTS, text).json()
        assert second["costAmount"] == "1.1"
        assert second["usageUnits"] == "3"

    def test_integral_decimal_token_count_is_accepted(self, tenant):
        text = json.dumps(base()).rstrip("}") + ',"inputTokens":100.0}'
        assert post_raw(tenant.api(), CLIENT_EVENTS, text).json()["inputTokens"] == 100

    def test_flow_id_is_the_trace_id(self, tenant):
        response = tenant.api().post(CLIENT_EVENTS, base(flowId="flow-9"), format="json")
        assert response.json()["traceId"] == "flow-9"
        assert Event.objects.get().trace_id == "flow-9"

    def test_meta_is_stored_exactly(self, tenant):
        text = json.dumps(base()).rstrip("}") + ',"meta":{"stripe_customer_id":"cus_x","p":0.1}}'
        assert post_raw(tenant.api(), CLIENT_EVENTS, text).status_code == 201
        from tests.events.conftest import db_rows

        (meta,) = db_rows("SELECT meta::text FROM events_event")[0]
        assert meta == '{"p": 0.1, "stripe_customer_id": "cus_x"}'


class TestBatch:
    def test_good_bad_and_duplicate_items(self, tenant):
        api = tenant.api()
        assert api.post(
            INGEST, {"events": [base(idempotencyKey="old")]}, format="json"
        ).status_code == (200)
        items = [
            base(idempotencyKey="a"),
            base(idempotencyKey="b", inputTokens=-3),
            base(idempotencyKey="old"),
            base(idempotencyKey="a"),
            {"eventName": "no customer"},
            base(),
            "not an object",
        ]
        response = api.post(INGEST, {"events": items}, format="json")
        assert response.status_code == 207, response.content
        data = response.json()
        assert (data["accepted"], data["duplicates"], data["rejected"]) == (2, 2, 3)
        statuses = {item["index"]: item["status"] for item in data["events"]}
        assert statuses == {0: "accepted", 2: "duplicate", 3: "duplicate", 5: "accepted"}
        assert data["events"][0]["id"] is not None and data["events"][1]["id"] is None
        generated = data["events"][3]["idempotencyKey"]
        assert generated and generated != "a"
        errors = {item["index"]: item["fields"] for item in data["errors"]}
        assert set(errors) == {1, 4, 6}
        assert "inputTokens" in errors[1]
        assert {"customerReferenceId", "featureKey"} <= set(errors[4])
        assert event_count(tenant.test) == 3
        assert rollup_mismatches() == []

    def test_empty_batch_is_400(self, tenant):
        response = tenant.api().post(INGEST, {"events": []}, format="json")
        assert response.status_code == 400
        assert "events" in response.json()["error"]["fields"]
        assert tenant.api().post(INGEST, {"nope": 1}, format="json").status_code == 400
        assert tenant.api().post(INGEST, [base()], format="json").status_code == 400

    def test_more_than_1000_events_is_413(self, tenant):
        response = tenant.api().post(INGEST, {"events": [base()] * 1001}, format="json")
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert event_count() == 0

    def test_a_full_batch_is_stored_in_a_constant_number_of_queries(
        self, tenant, catalog, django_assert_max_num_queries
    ):
        items = [
            base(
                customerReferenceId=f"cus_{i % 50}",
                featureKey=f"f{i % 5}",
                model="gpt-4o-mini",
                inputTokens=100 + i,
                outputTokens=20,
            )
            for i in range(1000)
        ]
        api = tenant.api()
        # Warm the process caches (key, catalog, overrides) as a running server has them.
        api.post(INGEST, {"events": [items[0]]}, format="json")
        # Savepoint, customers (2), features (2), one store statement, release.
        with django_assert_max_num_queries(7):
            response = api.post(INGEST, {"events": items}, format="json")
        assert response.status_code == 200
        assert response.json()["accepted"] == 1000
        assert rollup_mismatches() == []


class TestCostPrecedence:
    def test_cost_amount_wins_over_the_catalog(self, tenant, catalog):
        body = base(model="gpt-4o", inputTokens=1000, outputTokens=1000, costAmount="0.5")
        data = tenant.api().post(CLIENT_EVENTS, body, format="json").json()
        assert data["costAmount"] == "0.5"
        assert data["costSource"] == "explicit"
        assert data["priceVersionId"] is None

    def test_catalog_price_with_cached_tokens(self, tenant, catalog):
        # gpt-4o: 2.5 / 1.25 (cached) / 10 USD per MTok; inputTokens includes cached ones.
        body = base(
            costInput={
                "model": "gpt-4o",
                "inputTokens": 1_000_000,
                "cacheReadTokens": 400_000,
                "outputTokens": 100_000,
            }
        )
        data = tenant.api().post(CLIENT_EVENTS, body, format="json").json()
        # 600k * 2.5 + 400k * 1.25 + 100k * 10, per million = 1.5 + 0.5 + 1.0
        assert data["costAmount"] == "3"
        assert data["costSource"] == "catalog"
        assert data["modelProvider"] == "openai"  # inferred
        assert data["priceVersionId"] is not None

    def test_negotiated_rate_beats_the_catalog(self, tenant, catalog):
        override_create(
            environment=tenant.test,
            provider="openai",
            model="gpt-4o",
            input_mtok=Decimal("1"),
            output_mtok=Decimal("2"),
        )
        body = base(model="gpt-4o", inputTokens=1_000_000, outputTokens=1_000_000)
        data = tenant.api().post(CLIENT_EVENTS, body, format="json").json()
        assert data["costAmount"] == "3"
        assert data["costSource"] == "override_rate"
        # ... and only in that environment.
        live = tenant.api(tenant.sk_live).post(CLIENT_EVENTS, body, format="json").json()
        assert live["costSource"] == "catalog"
        assert live["costAmount"] == "12.5"

    def test_unknown_model_is_unpriced_never_zero(self, tenant, catalog):
        body = base(model="acme-llm-7", inputTokens=10, outputTokens=10)
        data = tenant.api().post(CLIENT_EVENTS, body, format="json").json()
        assert data["costAmount"] is None
        assert data["costSource"] == "unpriced"
        assert data["unpricedReason"] == "unknown_model"
        rollup = HourlyRollup.objects.get()
        assert rollup.unpriced_count == 1 and rollup.cost_usd == 0


class TestExactMoney:
    def test_ten_tenths_sum_to_exactly_one(self, tenant):
        items = [base(costAmount=Decimal("0.1"), revenueAmount="0.2") for _ in range(10)]
        text = json.dumps({"events": items}, default=str).replace('"0.1"', "0.1")
        assert post_raw(tenant.api(), INGEST, text).json()["accepted"] == 10
        rollup = HourlyRollup.objects.get()
        assert rollup.cost_usd == Decimal(1)
        assert str(rollup.cost_usd.normalize()) == "1"
        assert rollup.revenue_usd == Decimal(2)
        now = timezone.now()
        totals = usage_totals(tenant.test, start=now - dt.timedelta(hours=1), end=now)
        assert totals.cost_usd == Decimal(1)
        assert totals.margin_usd == Decimal(1)
        assert isinstance(totals.cost_usd, Decimal)
        assert all(isinstance(e.cost_usd, Decimal) for e in Event.objects.all())

    def test_twelve_decimal_places_survive_the_round_trip(self, tenant):
        body = base(costAmount="0.123456789012", revenueAmount="999999999999.999999999999")
        data = tenant.api().post(CLIENT_EVENTS, body, format="json").json()
        assert data["costAmount"] == "0.123456789012"
        assert data["revenueAmount"] == "999999999999.999999999999"
