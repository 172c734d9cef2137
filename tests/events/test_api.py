"""The event endpoints as the public pages use them: status codes, shapes, scopes, isolation."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from apps.customers.models import Customer
from apps.events.models import Event
from apps.features.models import Feature
from tests.events.conftest import event_count
from tests.factories import make_customer, make_key

pytestmark = pytest.mark.django_db

CLIENT_EVENTS = "/api/v1/client/events"
INGEST = "/api/events/ingest"


def assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["requestId"] == response["X-Request-ID"]
    return error


class TestPublicPageSnippets:
    """The bodies of reference/public-pages/000_*, 001_* and 003_*, unchanged."""

    def test_quickstart_body_with_cost_amount_returns_201(self, tenant, catalog):
        # 001_*: curl example, costAmount 0.05 (a JSON number, parsed as an exact decimal).
        body = {
            "eventIdempotencyKey": "550e8400-e29b-41d4-a716-446655440000",
            "eventName": "chat_completion",
            "customerReferenceId": "cus_123",
            "featureKey": "ai_summarization",
            "costInput": {"model": "gpt-4o", "modelProvider": "openai"},
            "usageUnits": 1847,
            "costAmount": Decimal("0.05"),
        }
        response = tenant.api().post(CLIENT_EVENTS, body, format="json")
        assert response.status_code == 201, response.content
        data = response.json()
        assert data["eventIdempotencyKey"] == "550e8400-e29b-41d4-a716-446655440000"
        assert data["costAmount"] == "0.05"
        assert data["costSource"] == "explicit"
        assert data["usageUnits"] == "1847"
        assert data["model"] == "gpt-4o"
        assert data["modelProvider"] == "openai"
        assert data["customerReferenceId"] == "cus_123"
        assert data["featureKey"] == "ai_summarization"
        assert data["margin"] is None
        assert data["id"]
        # Customer and feature are auto-created by the event.
        assert Customer.objects.get(environment=tenant.test, reference_id="cus_123").source == (
            "event"
        )
        assert Feature.objects.filter(environment=tenant.test, key="ai_summarization").exists()

        again = tenant.api().post(CLIENT_EVENTS, body, format="json")
        error = assert_envelope(again, 409, "duplicate_event")
        assert error["existingEventId"] == data["id"]
        assert event_count(tenant.test) == 1

    def test_landing_body_without_cost_amount_is_estimated(self, tenant, catalog):
        # 000_*: model + provider + usageUnits, no costAmount, no tokens: usageUnits priced
        # as input tokens, marked as an estimate (tests/events/test_estimated_cost.py).
        body = {
            "eventIdempotencyKey": str(uuid.uuid4()),
            "eventName": "chat_completion",
            "customerReferenceId": "cus_123",
            "featureKey": "ai_summarization",
            "costInput": {"model": "gpt-4o", "modelProvider": "openai"},
            "usageUnits": 1500,
        }
        response = tenant.api().post(CLIENT_EVENTS, body, format="json")
        assert response.status_code == 201, response.content
        data = response.json()
        assert Decimal(data["costAmount"]) == Decimal("0.00375")  # 1,500 x $2.50 / 1M
        assert data["costSource"] == "estimated"
        assert data["unpricedReason"] is None
        assert data["costEstimate"]["basis"] == "usage_units_as_input_tokens"
        event = Event.objects.get(environment=tenant.test)
        assert event.cost_usd == Decimal("0.00375") and event.cost_source == "estimated"

    def test_in_practice_body_with_revenue_reports_margin(self, tenant, catalog):
        # 002_* "In practice": costAmount computed client-side, revenueAmount 0.05.
        body = {
            "eventIdempotencyKey": str(uuid.uuid4()),
            "eventName": "chat_completion",
            "customerReferenceId": "user_42",
            "featureKey": "ai_chat",
            "costInput": {"model": "gpt-4o", "modelProvider": "openai"},
            "usageUnits": 1000,
            "costAmount": Decimal("1000") * Decimal("0.00003"),
            "revenueAmount": Decimal("0.05"),
        }
        response = tenant.api().post(CLIENT_EVENTS, body, format="json")
        assert response.status_code == 201, response.content
        data = response.json()
        assert data["costAmount"] == "0.03"
        assert data["revenueAmount"] == "0.05"
        assert data["margin"] == "0.02"

    def test_observe_ingest_body_is_costed_from_the_catalog(self, tenant, catalog):
        # 003_*: batch with model + tokens, no costAmount.
        body = {
            "events": [
                {
                    "eventName": "chat",
                    "customerReferenceId": "acme-corp",
                    "featureKey": "ai_chat",
                    "model": "gpt-4o-mini",
                    "modelProvider": "openai",
                    "inputTokens": 150,
                    "outputTokens": 80,
                }
            ]
        }
        response = tenant.api().post(INGEST, body, format="json")
        assert response.status_code == 200, response.content
        data = response.json()
        assert data["accepted"] == 1 and data["duplicates"] == 0 and data["rejected"] == 0
        assert data["events"][0]["status"] == "accepted"
        event = Event.objects.get(environment=tenant.test)
        # 150 * 0.15 / 1e6 + 80 * 0.6 / 1e6 = 0.0000225 + 0.000048
        assert event.cost_usd == Decimal("0.0000705")
        assert event.cost_source == "catalog"
        assert event.price_version_id is not None

    def test_numeric_user_id_from_javascript_is_the_reference_text(self, tenant, catalog):
        # 003_*: `customerReferenceId: user.id`: a numeric id arrives as a JSON number.
        body = {"eventName": "chat", "customerReferenceId": 4217, "featureKey": "chat"}
        response = tenant.api().post(CLIENT_EVENTS, body, format="json")
        assert response.status_code == 201, response.content
        assert response.json()["customerReferenceId"] == "4217"
        assert Customer.objects.filter(environment=tenant.test, reference_id="4217").exists()
        for bad in (4217.0, True, [4217]):
            body = {"eventName": "chat", "customerReferenceId": bad, "featureKey": "chat"}
            response = tenant.api().post(CLIENT_EVENTS, body, format="json")
            error = assert_envelope(response, 400, "validation_failed")
            assert "customerReferenceId" in str(error), error


class TestSingleEvent:
    def test_header_key_overrides_body_key(self, tenant):
        body = {
            "eventIdempotencyKey": "body-key",
            "eventName": "x",
            "customerReferenceId": "c",
            "featureKey": "f",
            "costAmount": "0.01",
        }
        response = tenant.api().post(
            CLIENT_EVENTS, body, format="json", HTTP_X_IDEMPOTENCY_KEY="header-key"
        )
        assert response.status_code == 201
        assert response.json()["eventIdempotencyKey"] == "header-key"
        body["eventIdempotencyKey"] = "header-key"
        assert_envelope(
            tenant.api().post(CLIENT_EVENTS, body, format="json"), 409, "duplicate_event"
        )

    def test_missing_key_is_generated(self, tenant):
        body = {"eventName": "x", "customerReferenceId": "c", "featureKey": "f"}
        first = tenant.api().post(CLIENT_EVENTS, body, format="json")
        second = tenant.api().post(CLIENT_EVENTS, body, format="json")
        assert first.status_code == second.status_code == 201
        assert first.json()["eventIdempotencyKey"] != second.json()["eventIdempotencyKey"]
        assert first.json()["costSource"] == "unpriced"
        assert first.json()["unpricedReason"] == "no_model"
        assert event_count(tenant.test) == 2

    def test_duplicate_rolls_back_auto_created_rows(self, tenant):
        body = {"eventIdempotencyKey": "k1", "eventName": "x", "customerReferenceId": "c1"}
        body["featureKey"] = "f1"
        assert tenant.api().post(CLIENT_EVENTS, body, format="json").status_code == 201
        body.update(customerReferenceId="c2", featureKey="f2")
        assert_envelope(
            tenant.api().post(CLIENT_EVENTS, body, format="json"), 409, "duplicate_event"
        )
        assert not Customer.objects.filter(reference_id="c2").exists()
        assert not Feature.objects.filter(key="f2").exists()

    def test_observe_key_without_events_write_is_denied(self, tenant):
        key = make_key(tenant.test, "obs", scopes=["usage.read"]).plaintext
        body = {"eventName": "x", "customerReferenceId": "c", "featureKey": "f"}
        assert_envelope(
            tenant.api(key).post(CLIENT_EVENTS, body, format="json"), 403, "scope_denied"
        )
        assert_envelope(
            tenant.api(key).post(INGEST, {"events": [body]}, format="json"), 403, "scope_denied"
        )
        assert event_count() == 0

    def test_observe_key_with_events_write_may_ingest(self, tenant):
        key = make_key(tenant.test, "obs", scopes=["events.write"]).plaintext
        body = {"eventName": "x", "customerReferenceId": "c", "featureKey": "f"}
        assert tenant.api(key).post(CLIENT_EVENTS, body, format="json").status_code == 201
        assert tenant.api(key).post(INGEST, {"events": [body]}, format="json").status_code == 200

    @pytest.mark.parametrize("scopes", [["read"], ["purchase"], ["read", "purchase"]])
    def test_customer_keys_cannot_write_events(self, tenant, scopes):
        """A ck_ key is held by an end customer: it must never write the company's books,
        not even for its own customer, and whatever cost or revenue it names."""
        customer = make_customer(tenant.test, "cus_own")
        key = make_key(tenant.test, "ck", customer=customer, scopes=scopes).plaintext
        own = {
            "eventName": "x",
            "customerReferenceId": "cus_own",
            "featureKey": "f",
            "costAmount": "999999999999",
            "revenueAmount": "0",
        }
        assert_envelope(tenant.api(key).post(CLIENT_EVENTS, own, format="json"), 403, "forbidden")
        assert_envelope(
            tenant.api(key).post(INGEST, {"events": [own]}, format="json"), 403, "forbidden"
        )
        assert event_count(tenant.test) == 0
        assert not Feature.objects.filter(key="f").exists()

    def test_no_key_is_401(self, client):
        response = client.post(CLIENT_EVENTS, {}, content_type="application/json")
        assert response.status_code == 401


class TestIsolation:
    def test_same_key_in_two_environments_and_orgs_makes_separate_events(self, tenant, outsider):
        body = {
            "eventIdempotencyKey": "shared-key",
            "eventName": "x",
            "customerReferenceId": "cus_1",
            "featureKey": "f",
            "costAmount": "1",
        }
        assert tenant.api().post(CLIENT_EVENTS, body, format="json").status_code == 201
        assert (
            tenant.api(tenant.sk_live).post(CLIENT_EVENTS, body, format="json").status_code == 201
        )
        assert outsider.api().post(CLIENT_EVENTS, body, format="json").status_code == 201
        for env in (tenant.test, tenant.live, outsider.test):
            assert event_count(env) == 1
            event = Event.objects.get(environment=env)
            customer = Customer.objects.get(pk=event.customer_id)
            assert customer.environment_id == env.pk
        assert event_count(outsider.live) == 0
