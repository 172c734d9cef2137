"""PostgreSQL unreachable inside one process: the answers integrators rely on.

The request runs in a thread whose database connection points at a port nothing
listens on (a real refused connection, as after a crash; no mock). ``tests/faults/``
does the same with real processes killed and frozen under load.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import OperationalError, connections
from django.test import Client, override_settings

from apps.apikeys import services as key_services
from tests.entitlements.test_lean_check import wsgi_post

CHECK = "/api/v1/client/entitlements/check"


def while_postgres_down[T](work: Callable[[], T]) -> T:
    """``work()`` in a thread whose database connections are refused (its own connection
    object, pointed at a port nothing listens on); the test's transaction is untouched."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        own = connections["default"]  # thread-local: this thread's own wrapper
        own.settings_dict = {**own.settings_dict, "PORT": 1}
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the caller
            outcome["error"] = exc
        finally:
            own.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def _post(client: Any, path: str, body: dict[str, Any], key: str) -> Any:
    return client.post(
        path, json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )


def _expire_cached_keys(seconds_ago: float) -> None:
    """Age every cached key: its APIKEY_CACHE_SECONDS ran out ``seconds_ago``."""
    for digest in key_services._keys:
        held = key_services._keys.entry(digest)
        assert held is not None
        key_services._keys.set(digest, held[0], ttl=-seconds_ago)


@pytest.fixture
def key(tenant: Any) -> str:
    return str(tenant.sk_test)


def test_a_check_with_an_unverifiable_key_is_denied_as_unavailable_not_5xx(key: str) -> None:
    body = {"customerReferenceId": "cus_1", "featureKey": "chat", "units": 2}
    response = while_postgres_down(lambda: _post(Client(), CHECK, body, key))
    assert response.status_code == 200
    data = response.json()
    assert data["allowed"] is False
    assert data["reason"]["code"] == "unavailable"
    assert (data["customerReferenceId"], data["featureKey"], data["requestedUnits"]) == (
        "cus_1",
        "chat",
        "2",
    )


def test_every_check_route_fails_closed_while_postgresql_is_down(key: str) -> None:
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    get_one, listed, evaluated = while_postgres_down(
        lambda: (
            client.get("/api/v1/client/entitlements/cus_1/chat?units=1", **auth),
            client.get("/api/v1/client/entitlements/cus_1", **auth),
            _post(
                client,
                "/api/v1/client/entitlements",
                {"customerReferenceId": "cus_1", "featureKey": "chat", "context": {"flowId": "f1"}},
                key,
            ),
        )
    )
    assert get_one.status_code == 200
    assert get_one.json()["reason"]["code"] == "unavailable"
    assert listed.status_code == 200
    assert [item["reason"]["code"] for item in listed.json()["items"]] == ["unavailable"]
    assert evaluated.status_code == 200
    assert evaluated.json()["allowed"] is False
    assert evaluated.json()["flowId"] == "f1"


def test_a_check_with_an_idempotency_key_fails_closed_too(key: str) -> None:
    """The idempotency middleware meets the outage before the view runs."""
    body = {"customerReferenceId": "cus_1", "featureKey": "chat"}
    client = Client(raise_request_exception=False)
    response = while_postgres_down(
        lambda: client.post(
            CHECK,
            json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {key}",
            HTTP_IDEMPOTENCY_KEY="check-1",
        )
    )
    assert response.status_code == 200
    assert response.json()["allowed"] is False
    assert response.json()["reason"]["code"] == "unavailable"


def test_bad_input_is_still_a_400_while_postgresql_is_down(key: str) -> None:
    response = while_postgres_down(lambda: _post(Client(), CHECK, {"featureKey": "chat"}, key))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_failed"


def test_the_lean_check_fails_closed_through_the_wsgi_application(key: str) -> None:
    body = json.dumps({"customerReferenceId": "cus_1", "featureKey": "chat"}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    status, _headers, payload, _senders = while_postgres_down(lambda: wsgi_post(body, headers))
    assert status == 200
    assert json.loads(payload)["reason"]["code"] == "unavailable"


def test_a_recently_verified_key_is_trusted_while_postgresql_is_unreachable(key: str) -> None:
    first = key_services.authenticate_key(key, touch=False)
    _expire_cached_keys(seconds_ago=10)
    trusted = while_postgres_down(lambda: key_services.authenticate_key(key, touch=False))
    assert trusted.pk == first.pk
    with override_settings(APIKEY_STALE_SECONDS=5), pytest.raises(OperationalError):
        while_postgres_down(lambda: key_services.authenticate_key(key, touch=False))


def test_an_unknown_key_cannot_be_verified_while_postgresql_is_unreachable(key: str) -> None:
    with pytest.raises(OperationalError):
        while_postgres_down(lambda: key_services.authenticate_key(key, touch=False))


def test_ingestion_answers_503_unavailable_and_stores_nothing(key: str, tenant: Any) -> None:
    from apps.events.models import Event

    event = {
        "eventName": "chat",
        "customerReferenceId": "cus_1",
        "featureKey": "chat",
        "eventIdempotencyKey": "k-1",
    }
    client = Client()
    single, batch = while_postgres_down(
        lambda: (
            _post(client, "/api/v1/client/events", event, key),
            _post(client, "/api/events/ingest", {"events": [event]}, key),
        )
    )
    for response in (single, batch):
        assert response.status_code == 503
        assert response["Retry-After"] == "2"
        error = response.json()["error"]
        assert error["code"] == "unavailable"
        assert error["requestId"] == response["X-Request-ID"]
    assert not Event.objects.filter(environment=tenant.test).exists()
    # Back up: the same key is stored, once.
    assert _post(client, "/api/v1/client/events", event, key).status_code == 201


def test_readyz_answers_503_while_postgresql_is_down_and_200_after(db: Any) -> None:
    client = Client()
    down = while_postgres_down(lambda: client.get("/readyz"))
    assert down.status_code == 503
    assert down.json()["checks"]["database"].startswith("error")
    assert client.get("/readyz").status_code == 200


def test_a_page_answers_503_not_500_while_postgresql_is_down(db: Any, tenant: Any) -> None:
    client = Client(raise_request_exception=False)
    form = {"login": tenant.owner.email, "password": "wrong"}
    response = while_postgres_down(lambda: client.post("/accounts/login/", form))
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
