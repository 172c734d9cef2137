"""API conventions: error envelope, decimal JSON, request ids, idempotency replay,
per-key rate limits, health and readiness, schema and docs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from decimal import Decimal

import pytest
from django.test import override_settings

from apps.apikeys.models import ApiKey
from apps.core.api.parsers import loads
from apps.core.money import (
    UnknownCurrency,
    currency_exponent,
    decimal_str,
    from_minor_units,
    is_currency,
    to_minor_units,
)
from apps.core.redis import get_redis

pytestmark = pytest.mark.django_db


def test_request_id_is_echoed_and_minted(tenant):
    api = tenant.api()
    assert (
        api.get("/api/sdk-keys/me", HTTP_X_REQUEST_ID="trace-abc-1")["X-Request-ID"]
        == "trace-abc-1"
    )
    minted = api.get("/api/sdk-keys/me")["X-Request-ID"]
    assert minted.startswith("req_")
    # Junk is not reflected back.
    assert api.get("/api/sdk-keys/me", HTTP_X_REQUEST_ID="<script>")["X-Request-ID"].startswith(
        "req_"
    )


def test_unknown_api_route_is_404_in_envelope(tenant):
    response = tenant.api().get("/api/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_malformed_json_is_400_in_envelope(tenant):
    response = tenant.api().generic(
        "POST", "/api/sdk-keys", "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_body"


def test_nan_and_infinity_are_refused(tenant):
    for literal in ("NaN", "Infinity", "-Infinity"):
        body = '{"kind": "obs", "scopes": ["usage.read"], "budgetCents": ' + literal + "}"
        response = tenant.api().generic(
            "POST", "/api/sdk-keys", body, content_type="application/json"
        )
        assert response.status_code == 400, literal


def test_json_numbers_are_parsed_as_exact_decimals():
    parsed = loads('{"a": 0.1, "b": 0.2, "n": 3}')
    assert isinstance(parsed["a"], Decimal) and isinstance(parsed["n"], int)
    assert parsed["a"] + parsed["b"] == Decimal("0.3")


def test_money_helpers():
    assert decimal_str(Decimal("0.007500000000")) == "0.0075"
    assert decimal_str(Decimal("0E-12")) == "0"
    assert decimal_str(Decimal("1E+3")) == "1000"
    assert to_minor_units(Decimal("10.005"), "USD") == 1000  # half to even, once
    assert to_minor_units(Decimal("10.015"), "USD") == 1002
    assert to_minor_units(Decimal("1234"), "JPY") == 1234


@pytest.mark.parametrize(
    ("currency", "exponent", "amount", "minor"),
    [
        # Zero-decimal currencies the old hand-written table did not list: a guessed
        # exponent of 2 would have invoiced them 100 times too much.
        ("UGX", 0, "5000", 5000),
        ("XAF", 0, "655", 655),
        ("PYG", 0, "7300", 7300),
        ("IQD", 3, "1.234", 1234),
        ("CLF", 4, "0.0525", 525),
        ("usd", 2, "19.99", 1999),
        ("HUF", 2, "100.50", 10050),
    ],
)
def test_minor_units_follow_iso_4217(currency, exponent, amount, minor):
    assert currency_exponent(currency) == exponent
    assert to_minor_units(Decimal(amount), currency) == minor
    assert from_minor_units(minor, currency) == Decimal(amount)


@pytest.mark.parametrize("code", ["XYZ", "XAU", "XXX", "US"])
def test_unknown_currencies_are_refused_not_guessed(code):
    assert not is_currency(code)
    with pytest.raises(UnknownCurrency):
        to_minor_units(Decimal(1), code)


def test_wrong_method_is_405_in_envelope(tenant):
    response = tenant.api().put("/api/sdk-keys/me", {}, format="json")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


class TestIdempotency:
    def body(self, name: str = "k") -> dict:
        return {"kind": "obs", "name": name, "scopes": ["usage.read"]}

    def test_same_key_same_body_replays_first_answer(self, tenant):
        api = tenant.api()
        first = api.post("/api/sdk-keys", self.body(), format="json", HTTP_IDEMPOTENCY_KEY="abc")
        second = api.post("/api/sdk-keys", self.body(), format="json", HTTP_IDEMPOTENCY_KEY="abc")
        assert first.status_code == second.status_code == 201
        assert second["Idempotent-Replayed"] == "true"
        assert first.json() == second.json()
        assert ApiKey.objects.filter(name="k").count() == 1

    def test_same_key_other_body_is_409(self, tenant):
        api = tenant.api()
        api.post("/api/sdk-keys", self.body("a"), format="json", HTTP_IDEMPOTENCY_KEY="abc")
        response = api.post(
            "/api/sdk-keys", self.body("b"), format="json", HTTP_IDEMPOTENCY_KEY="abc"
        )
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "idempotency_conflict"
        assert not ApiKey.objects.filter(name="b").exists()

    def test_4xx_is_replayed_too(self, tenant):
        api = tenant.api()
        bad = {"kind": "obs", "scopes": ["nope"]}
        first = api.post("/api/sdk-keys", bad, format="json", HTTP_IDEMPOTENCY_KEY="x1")
        second = api.post("/api/sdk-keys", bad, format="json", HTTP_IDEMPOTENCY_KEY="x1")
        assert first.status_code == second.status_code == 400
        assert second["Idempotent-Replayed"] == "true"

    def test_keys_are_per_environment(self, tenant, outsider):
        a = tenant.api().post(
            "/api/sdk-keys", self.body("t"), format="json", HTTP_IDEMPOTENCY_KEY="same"
        )
        b = outsider.api().post(
            "/api/sdk-keys", self.body("t"), format="json", HTTP_IDEMPOTENCY_KEY="same"
        )
        c = tenant.api(tenant.sk_live).post(
            "/api/sdk-keys", self.body("t"), format="json", HTTP_IDEMPOTENCY_KEY="same"
        )
        assert a.json()["id"] != b.json()["id"] != c.json()["id"]
        assert "Idempotent-Replayed" not in b and "Idempotent-Replayed" not in c

    def test_too_long_key_is_400(self, tenant):
        response = tenant.api().post(
            "/api/sdk-keys", self.body(), format="json", HTTP_IDEMPOTENCY_KEY="x" * 256
        )
        assert response.status_code == 400


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_idempotency_key_run_once(live_server):
    import requests

    from tests.conftest import make_tenant

    tenant = make_tenant("Race")
    url = f"{live_server.url}/api/sdk-keys"
    headers = {"Authorization": f"Bearer {tenant.sk_test}", "Idempotency-Key": "race-1"}
    body = {"kind": "obs", "name": "raced", "scopes": ["usage.read"]}
    results: list[int] = []
    barrier = threading.Barrier(8)

    def call() -> None:
        barrier.wait()
        results.append(requests.post(url, json=body, headers=headers, timeout=10).status_code)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ApiKey.objects.filter(name="raced").count() == 1
    assert set(results) <= {201, 409}
    assert results.count(201) >= 1


@override_settings(API_RATE_LIMIT_PER_SECOND=3)
def test_per_key_rate_limit_is_429_with_retry_after(tenant):
    api = tenant.api()
    statuses = [api.get("/api/sdk-keys/me") for _ in range(6)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert int(limited[0]["Retry-After"]) >= 1
    assert limited[0].json()["error"]["code"] == "rate_limited"
    # Another key has its own budget.
    assert tenant.api(tenant.sk_live).get("/api/sdk-keys/me").status_code == 200


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_readyz_is_503_when_redis_is_unreachable(client):
    get_redis.cache_clear()
    try:
        with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
            response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["redis"].startswith("error")
    finally:
        get_redis.cache_clear()


def test_schema_and_docs_are_served(client):
    schema = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"] if schema["Content-Type"].endswith("json") else None
    if paths is None:
        import yaml

        paths = yaml.safe_load(schema.content)["paths"]
    assert "/api/sdk-keys/me" in paths and "/api/signup" in paths
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()
    assert b"cdn" not in docs.content.lower()


def test_security_headers_on_pages(client):
    response = client.get("/accounts/login/")
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TANSO_ENV": "production"}, "SECRET_KEY"),
        ({"TANSO_ENV": "production", "SECRET_KEY": "x" * 50, "DEBUG": "1"}, "DEBUG"),
        ({"TANSO_ENV": "production", "SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"TANSO_ENV": "staging"}, "TANSO_ENV"),
        ({"TANSO_ENV": "development", "DEBUG": "maybe"}, "DEBUG"),
    ],
)
def test_unsafe_settings_refuse_to_start(env, message):
    import os

    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "TANSO_ENV"}}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**clean, **env, "DJANGO_SETTINGS_MODULE": "tanso.settings"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stderr


def test_production_settings_start_with_a_real_key():
    import os

    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "TANSO_ENV"}}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS)",
        ],
        env={
            **clean,
            "TANSO_ENV": "production",
            "SECRET_KEY": "k" * 50,
            "ALLOWED_HOSTS": "tanso.example",
            "DJANGO_SETTINGS_MODULE": "tanso.settings",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "31536000"]
