"""Invalid API keys: limited per client IP (429 rate_limited with Retry-After), and a
repeated one costs no database query."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.audit import Actor
from apps.apikeys import authentication
from apps.apikeys import services as key_services
from apps.apikeys.models import ApiKey
from apps.apikeys.services import apikey_create
from tests.redis_outage import app_redis, dead_url

pytestmark = pytest.mark.django_db

LIMIT = 5


@pytest.fixture(autouse=True)
def _small_limit(settings: Any) -> None:
    settings.API_AUTH_FAILURES_PER_MINUTE = LIMIT


def call(key: str, ip: str = "10.9.0.1", **headers: Any) -> Any:
    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}", **headers)
    return client.get("/api/sdk-keys/me")


def random_key() -> str:
    return f"sk_test_{secrets.token_hex(16)}"


def test_a_repeated_invalid_key_costs_no_query(django_assert_num_queries: Any) -> None:
    bad = random_key()
    with django_assert_num_queries(1):
        assert call(bad).status_code == 401
    with django_assert_num_queries(0):
        response = call(bad)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_key"


def test_failed_authentications_are_limited_per_ip(
    tenant: Any, django_assert_num_queries: Any
) -> None:
    assert call(tenant.sk_test).status_code == 200  # this process now knows the key
    for _ in range(LIMIT):
        assert call(random_key()).status_code == 401
    refused = call(random_key())
    assert refused.status_code == 429
    body = refused.json()["error"]
    assert body["code"] == "rate_limited" and body["requestId"]
    assert 0 < int(refused["Retry-After"]) <= 60
    # Refused without a lookup from now on; a key this process knows still passes.
    with django_assert_num_queries(0):
        assert call(random_key()).status_code == 429
    assert call(tenant.sk_test).status_code == 200
    key_services._keys.clear()  # past APIKEY_CACHE_SECONDS: looked up again, still valid
    assert call(tenant.sk_test).status_code == 200
    # Another address is not affected.
    assert call(random_key(), ip="10.9.0.2").status_code == 401


def test_the_limit_is_shared_across_processes(settings: Any) -> None:
    """Counted in Redis: a process that has not seen the failures refuses too."""
    for _ in range(LIMIT):
        call(random_key())
    authentication._blocked.clear()  # another process: no local mark
    assert call(random_key()).status_code == 429


def test_a_limited_request_with_an_idempotency_key_is_429_not_500() -> None:
    for _ in range(LIMIT):
        call(random_key(), HTTP_IDEMPOTENCY_KEY="k1")
    response = APIClient(REMOTE_ADDR="10.9.0.1")
    response.credentials(HTTP_AUTHORIZATION=f"Bearer {random_key()}")
    answer = response.post("/api/sdk-keys", {"name": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert answer.status_code == 429
    assert answer.json()["error"]["code"] == "rate_limited"


def test_with_redis_down_failures_are_limited_in_process() -> None:
    with app_redis(dead_url()):
        for _ in range(LIMIT):
            assert call(random_key()).status_code == 401
        assert call(random_key()).status_code == 429


def test_a_key_created_with_a_plaintext_tried_before_works_at_once(tenant: Any) -> None:
    plaintext = random_key()
    assert call(plaintext).status_code == 401  # remembered as missing
    apikey_create(
        environment=tenant.test, kind=ApiKey.Kind.SECRET, actor=Actor(), plaintext=plaintext
    )
    assert call(plaintext).status_code == 200
