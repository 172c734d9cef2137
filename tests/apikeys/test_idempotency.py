"""Idempotency-Key records belong to the API key that made them, and a replay or a claim
happens only after the key is authenticated, its scope checked and its rate counted."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from apps.apikeys.models import ApiKey, IdempotencyRecord
from apps.subscriptions.models import Subscription
from tests.factories import make_customer, make_key
from tests.plans.helpers import make_plan

pytestmark = pytest.mark.django_db

ADMIN_KEY_BODY = {"kind": "obs", "name": "minted", "scopes": ["admin"]}


def mint(api, idem: str = "k1"):
    return api.post("/api/sdk-keys", ADMIN_KEY_BODY, format="json", HTTP_IDEMPOTENCY_KEY=idem)


@pytest.fixture
def ck_key(tenant) -> str:
    return make_key(tenant.test, "ck", customer=make_customer(tenant.test, "cus_1")).plaintext


@pytest.fixture
def read_only_key(tenant) -> str:
    return make_key(tenant.test, "obs", scopes=["usage.read"]).plaintext


def test_a_replay_never_answers_a_key_without_the_scope(tenant, ck_key, read_only_key):
    first = mint(tenant.api())
    assert first.status_code == 201
    secret = first.json()["key"]

    as_customer = mint(tenant.api(ck_key))
    assert as_customer.status_code == 403
    assert as_customer.json()["error"]["code"] == "forbidden"
    assert "Idempotent-Replayed" not in as_customer
    assert secret not in as_customer.content.decode()

    as_reader = mint(tenant.api(read_only_key))
    assert as_reader.status_code == 403
    assert as_reader.json()["error"]["code"] == "scope_denied"
    assert "Idempotent-Replayed" not in as_reader
    assert secret not in as_reader.content.decode()

    # The admin's own retry still replays.
    again = mint(tenant.api())
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["key"] == secret
    assert ApiKey.objects.filter(name="minted").count() == 1


def test_a_refused_caller_cannot_claim_a_key_for_others(tenant, ck_key):
    refused = mint(tenant.api(ck_key))
    assert refused.status_code == 403
    assert not IdempotencyRecord.objects.exists()

    admin = mint(tenant.api())
    assert admin.status_code == 201, admin.content
    assert "Idempotent-Replayed" not in admin
    assert ApiKey.objects.filter(name="minted").count() == 1


def test_another_key_of_the_same_environment_has_its_own_records(tenant):
    other = make_key(tenant.test, "sk").plaintext
    first = mint(tenant.api())
    second = mint(tenant.api(other))
    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second
    assert first.json()["id"] != second.json()["id"]
    # Each key's retry replays its own answer.
    assert mint(tenant.api(other)).json()["id"] == second.json()["id"]


@override_settings(API_RATE_LIMIT_PER_SECOND=1)
def test_a_replay_is_rate_limited_like_any_call(tenant):
    assert mint(tenant.api()).status_code == 201
    # Three retries within well under a second: at most one fits a fresh one-second window.
    retries = [mint(tenant.api()) for _ in range(3)]
    limited = [r for r in retries if r.status_code == 429]
    assert limited, [r.status_code for r in retries]
    assert all("Idempotent-Replayed" not in r for r in limited)


def test_the_query_string_is_part_of_the_request(tenant):
    make_customer(tenant.test, "acme-corp")
    make_plan(tenant.test, "pro", price=49)
    api = tenant.api()
    created = api.post(
        "/api/v1/client/subscriptions",
        {"customerReferenceId": "acme-corp", "planId": "pro"},
        format="json",
    )
    assert created.status_code == 201, created.content
    url = f"/api/v1/client/subscriptions/cancellation/{created.json()['id']}"

    first = api.post(f"{url}?cancelMode=END_OF_PERIOD", HTTP_IDEMPOTENCY_KEY="cancel-1")
    assert first.status_code == 200, first.content
    assert first.json()["cancelMode"] == "END_OF_PERIOD"

    other = api.post(f"{url}?cancelMode=IMMEDIATE", HTTP_IDEMPOTENCY_KEY="cancel-1")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert Subscription.objects.get().status != Subscription.Status.CANCELLED

    same = api.post(f"{url}?cancelMode=END_OF_PERIOD", HTTP_IDEMPOTENCY_KEY="cancel-1")
    assert same["Idempotent-Replayed"] == "true"
    assert same.json() == first.json()


def test_no_header_no_record_and_an_unauthenticated_call_claims_nothing(tenant, client):
    assert tenant.api().post("/api/sdk-keys", ADMIN_KEY_BODY, format="json").status_code == 201
    response = client.post(
        "/api/sdk-keys", ADMIN_KEY_BODY, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert response.status_code == 401
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (
            "/api/v1/client/events",
            {"eventName": "x", "customerReferenceId": "c", "featureKey": "f"},
        ),
        (
            "/api/events/ingest",
            {"events": [{"eventName": "x", "customerReferenceId": "c", "featureKey": "f"}]},
        ),
    ],
)
def test_the_hot_paths_touch_no_record_without_the_header(tenant, url, body):
    api = tenant.api()
    with CaptureQueriesContext(connection) as plain:
        assert api.post(url, body, format="json").status_code in (200, 201)
    assert not [q for q in plain.captured_queries if "idempotencyrecord" in q["sql"]]
    with CaptureQueriesContext(connection) as keyed:
        api.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="hot-1")
    assert [q for q in keyed.captured_queries if "idempotencyrecord" in q["sql"]]
