"""The check's lean path answers exactly as the full stack does.

``tanso.wsgi.application`` (what granian runs) answers the common check before Django
(``tanso/fastpath.py``) and lets Django answer everything else. Each case below is
asked through the WSGI application and through Django's full stack (the test client:
the DRF view): same status, same body, same headers (the request id is fixed by the
caller). Which path answered is read from Django's ``request_started`` signal."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.signals import request_started
from django.test import Client
from django.utils.datastructures import CaseInsensitiveMapping

from tests.factories import make_key
from tests.wsgi import wsgi_call

from .conftest import rule

pytestmark = pytest.mark.django_db


PATH = "/api/v1/client/entitlements/check"
REQUEST_ID = "parity-1"


def wsgi_post(
    body: bytes, headers: dict[str, str]
) -> tuple[int, CaseInsensitiveMapping, bytes, set]:
    """The check through tanso.wsgi.application, with the names of the request_started
    senders (LeanCheck answers before Django; WSGIHandler means Django answered)."""
    senders: set = set()

    def seen(sender: Any, **kwargs: Any) -> None:
        senders.add(sender.__name__)

    request_started.connect(seen)
    try:
        status, names, payload = wsgi_call(PATH, method="POST", headers=headers, body=body)
    finally:
        request_started.disconnect(seen)
    last = CaseInsensitiveMapping({name: values[-1] for name, values in names.items()})
    return status, last, payload, senders


def drf_post(body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    extra = {}
    content_type = "application/json"
    for name, value in headers.items():
        if name.lower() == "content-type":
            content_type = value
        else:
            extra[f"HTTP_{name.upper().replace('-', '_')}"] = value
    response = Client().post(PATH, body, content_type=content_type, **extra)
    return response.status_code, dict(response.headers), response.content


def both(body: Any, headers: dict[str, str]) -> tuple[int, Any, set]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-Request-ID": REQUEST_ID, **headers}
    status, out_headers, payload, senders = wsgi_post(raw, headers)
    drf_status, drf_headers, drf_payload = drf_post(raw, headers)
    assert status == drf_status, (payload, drf_payload)
    assert json.loads(payload) == json.loads(drf_payload)
    assert {k.lower(): v for k, v in out_headers.items()} == {
        k.lower(): v for k, v in drf_headers.items()
    }
    return status, json.loads(payload), senders


LEAN = {"LeanCheck"}  # answered before Django
DJANGO = {"LeanCheck", "WSGIHandler"}  # looked at, then left to Django


@pytest.fixture
def capped(platform):
    plan = platform.plan("pro", {"tokens": rule(price="0.01", cap="10")})
    platform.subscribe(plan, "cus_1")
    platform.customer("cus_2")  # no subscription
    assert platform.event(units=4).status_code == 201
    return platform


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_allowed(capped):
    status, body, senders = both(
        {"customerReferenceId": "cus_1", "featureKey": "tokens"}, auth(capped.tenant.sk_test)
    )
    assert (status, body["allowed"], body["usage"]["used"]) == (200, True, "4")
    assert senders == LEAN


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"customerReferenceId": "cus_1", "featureKey": "tokens", "units": "7"}, "limit_reached"),
        ({"customerReferenceId": "cus_1", "featureKey": "other"}, "feature_not_in_plan"),
        ({"customerReferenceId": "cus_2", "featureKey": "tokens"}, "no_subscription"),
        ({"customerReferenceId": "nobody", "featureKey": "tokens"}, "no_subscription"),
    ],
)
def test_denied(capped, body, reason):
    status, answer, senders = both(body, auth(capped.tenant.sk_test))
    assert (status, answer["allowed"], answer["reason"]["code"]) == (200, False, reason)
    assert senders == LEAN


@pytest.mark.parametrize(
    "body",
    [
        {"customerReferenceId": "cus_1"},
        {"customerReferenceId": "cus_1", "featureKey": "tokens", "units": "abc"},
        b'{"customerReferenceId": "cus_1", "featureKey": "tokens", "units": 1.5e-13}',
        {"customerReferenceId": "cus_1", "featureKey": "tokens", "units": "-1"},
        {"customerReferenceId": 5, "featureKey": "tokens"},
        ["not", "an", "object"],
        b"{not json",
        b"",
    ],
)
def test_bad_input(capped, body):
    status, answer, senders = both(body, auth(capped.tenant.sk_test))
    assert status == 400 and answer["error"]["requestId"] == REQUEST_ID
    assert senders == DJANGO


@pytest.mark.parametrize("scheme", ["X-API-Key", "bearer", "Bearer  "])
def test_other_ways_to_send_the_key(capped, scheme):
    key = capped.tenant.sk_test
    headers = {"X-API-Key": key} if scheme == "X-API-Key" else {"Authorization": f"{scheme} {key}"}
    status, body, senders = both({"customerReferenceId": "cus_1", "featureKey": "tokens"}, headers)
    assert (status, body["allowed"], senders) == (200, True, LEAN)


def test_bad_key(capped):
    status, answer, senders = both(
        {"customerReferenceId": "cus_1", "featureKey": "tokens"}, auth("sk_test_nope")
    )
    assert (status, answer["error"]["code"]) == (401, "invalid_key")
    assert senders == DJANGO


def test_no_key(capped):
    status, _answer, senders = both({"customerReferenceId": "cus_1", "featureKey": "tokens"}, {})
    assert status == 401 and senders == DJANGO


def test_wrong_scope(capped):
    key = make_key(capped.env, "obs", scopes=["events.write"]).plaintext
    status, answer, senders = both(
        {"customerReferenceId": "cus_1", "featureKey": "tokens"}, auth(key)
    )
    assert (status, answer["error"]["code"]) == (403, "scope_denied")
    assert senders == DJANGO


def test_customer_key_of_another_customer(capped):
    key = make_key(capped.env, "ck", customer=capped.customer("cus_2"), scopes=["read"])
    status, answer, senders = both(
        {"customerReferenceId": "cus_1", "featureKey": "tokens"}, auth(key.plaintext)
    )
    assert (status, answer["error"]["code"]) == (403, "customer_mismatch")
    assert senders == DJANGO
    own = make_key(capped.env, "ck", customer=capped.customer("cus_1"), scopes=["read"])
    status, answer, senders = both(
        {"customerReferenceId": "cus_1", "featureKey": "tokens"}, auth(own.plaintext)
    )
    assert (status, answer["allowed"], senders) == (200, True, LEAN)


def test_other_environment_and_organization_see_nothing(capped, outsider):
    body = {"customerReferenceId": "cus_1", "featureKey": "tokens"}
    for key in (capped.tenant.sk_live, outsider.sk_test):
        status, answer, senders = both(body, auth(key))
        assert (status, answer["allowed"], answer["reason"]["code"]) == (
            200,
            False,
            "no_subscription",
        )
        assert "usage" not in answer and senders == LEAN


@pytest.mark.parametrize(
    ("headers", "status"),
    [({"Content-Type": "text/plain"}, 415), ({"Accept": "text/html"}, 406)],
)
def test_other_media_types_go_to_drf(capped, headers, status):
    got, _answer, senders = both(
        {"customerReferenceId": "cus_1", "featureKey": "tokens"},
        {**auth(capped.tenant.sk_test), **headers},
    )
    assert got == status and senders == DJANGO


def test_a_reservation_goes_to_drf(capped):
    raw = json.dumps({"customerReferenceId": "cus_1", "featureKey": "tokens", "reserve": True})
    status, _headers, payload, senders = wsgi_post(
        raw.encode(), {"Content-Type": "application/json", **auth(capped.tenant.sk_test)}
    )
    assert status == 200 and "reservationId" in json.loads(payload)
    assert senders == DJANGO


def test_over_the_rate_limit_is_drfs_429(capped, settings):
    settings.API_RATE_LIMIT_PER_SECOND = 1
    key = make_key(capped.env, "sk").plaintext  # a key of its own: its own counter
    body = json.dumps({"customerReferenceId": "cus_1", "featureKey": "tokens"}).encode()
    headers = {"Content-Type": "application/json", **auth(key)}
    answers = [wsgi_post(body, headers) for _ in range(5)]
    assert answers[0][0] == 200 and answers[0][3] == LEAN
    limited = [a for a in answers if a[0] == 429]
    assert limited and json.loads(limited[0][2])["error"]["code"] == "rate_limited"
    assert all(a[3] == DJANGO for a in limited) and "Retry-After" in limited[0][1]
