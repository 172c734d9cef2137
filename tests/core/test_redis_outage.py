"""With Redis down or hung, login, signup, the API and the health checks keep answering,
quickly, and every limit holds in its documented fallback (docs/api.md, "Rate limits
and timeouts")."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.core.redis import get_redis
from tests.factories import PASSWORD, UserFactory
from tests.redis_outage import EmbeddedRedis, app_redis, dead_url, hung_url, run_bounded

# Every Redis call gives up after REDIS_SOCKET_TIMEOUT (0.5 s) and one connect failure
# marks the server down for REDIS_DOWN_SECONDS: a whole request stays well inside this.
BOUND = 4.0


def login(email: str, password: str = PASSWORD, ip: str = "10.1.0.1") -> Any:
    return Client(REMOTE_ADDR=ip).post("/accounts/login/", {"login": email, "password": password})


def signup(email: str, ip: str = "10.2.0.1") -> Any:
    return APIClient().post("/api/signup", {"email": email}, format="json", REMOTE_ADDR=ip)


# --- Redis down (connections refused) ----------------------------------------------


@pytest.mark.django_db
def test_login_page_and_login_work_with_redis_down() -> None:
    user = UserFactory()
    with app_redis(dead_url()):
        assert Client().get("/accounts/login/").status_code == 200
        wrong = login(user.email, "not-the-password")
        assert wrong.status_code == 200 and "not correct" in wrong.content.decode()
        right = login(user.email)
        assert right.status_code == 302, right.content


@pytest.mark.django_db
def test_failed_logins_are_still_limited_in_process_with_redis_down() -> None:
    user = UserFactory()
    with app_redis(dead_url()):
        try:
            for _ in range(5):
                assert login(user.email, "wrong").status_code == 200
            locked = login(user.email)
            assert locked.status_code == 429
            assert int(locked["Retry-After"]) > 0
        finally:
            cache.fallback.clear()  # type: ignore[attr-defined]


@pytest.mark.django_db(transaction=True)
def test_signup_with_redis_and_broker_down_answers_the_key_of_the_account_it_made(
    settings: Any,
) -> None:
    """The on-commit email enqueue fails (the broker is Redis): the account and the
    answer that carries its key both exist, or neither."""
    settings.SIGNUP_RATE_LIMIT_PER_HOUR = 2
    with app_redis(dead_url()):
        response = signup("agent@down.io")
        assert response.status_code == 201, response.content
        key = response.json()["key"]
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        me = api.get("/api/sdk-keys/me")
        assert me.status_code == 200, me.content  # the per-key limit counts in-process
        # The signup limit holds, counted in PostgreSQL (the audit log of signups).
        assert signup("agent2@down.io").status_code == 201
        refused = signup("agent3@down.io")
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 3500 < int(refused["Retry-After"]) <= 3600
        assert signup("agent4@down.io", ip="10.2.0.2").status_code == 201
    assert not User.objects.filter(email="agent3@down.io").exists()


@pytest.mark.django_db
def test_readyz_reports_redis_down_quickly() -> None:
    with app_redis(dead_url()):
        started = time.monotonic()
        response = Client().get("/readyz")
        assert response.status_code == 503
        assert time.monotonic() - started < 1


# --- Redis hung (accepts, never answers) -----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_login_and_signup_finish_quickly_with_redis_hung() -> None:
    user = UserFactory()
    with hung_url() as url, app_redis(url):
        response, took = run_bounded(BOUND, lambda: login(user.email))
        assert response.status_code == 302, response.content  # type: ignore[attr-defined]
        response, took = run_bounded(BOUND, lambda: signup("hung@x.io"))
        assert response.status_code == 201, response.content  # type: ignore[attr-defined]
        assert User.objects.filter(email="hung@x.io").exists()
        health, took = run_bounded(BOUND, lambda: Client().get("/healthz"))
        assert health.status_code == 200 and took < 0.5  # type: ignore[attr-defined]


def test_a_hung_redis_costs_one_timeout_then_fails_fast() -> None:
    """No retry on a timeout, and the down mark spares the next connections."""
    with hung_url() as url, app_redis(url):
        client = get_redis()
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.get("x")
        assert time.monotonic() - started < 0.9  # one REDIS_SOCKET_TIMEOUT (0.5 s), not 4
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            client.get("x")
        assert time.monotonic() - started < 0.1


# --- A real Redis that stops and comes back -------------------------------------------


@pytest.fixture
def own_redis() -> Any:
    server = EmbeddedRedis()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.django_db
def test_paused_redis_degrades_then_recovers(own_redis: EmbeddedRedis) -> None:
    with app_redis(own_redis.url, REDIS_DOWN_SECONDS=0.3):
        cache.set("greeting", "hello")
        assert cache.get("greeting") == "hello"
        own_redis.pause()
        # The open connection times out reading, the next one connecting (which marks
        # the server down); each within one REDIS_SOCKET_TIMEOUT.
        for _ in range(2):
            started = time.monotonic()
            assert cache.get("greeting") is None  # a cache fails open: a miss
            assert time.monotonic() - started < 0.9
        started = time.monotonic()
        assert cache.get("greeting") is None
        assert time.monotonic() - started < 0.1  # marked down: no wait at all
        own_redis.resume()
        time.sleep(0.4)
        assert cache.get("greeting") == "hello"
        assert get_redis().ping()


@pytest.mark.django_db
def test_the_per_key_limit_holds_in_process_with_redis_down(
    tenant: Any, settings: Any, monkeypatch: Any
) -> None:
    from types import SimpleNamespace

    from apps.core import ratelimit

    settings.API_RATE_LIMIT_PER_SECOND = 2
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: 1_800_000_000.2))
    with app_redis(dead_url()):
        statuses = [tenant.api().get("/api/sdk-keys/me").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
