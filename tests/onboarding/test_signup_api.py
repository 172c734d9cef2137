"""POST /api/signup: an account and an obs_ key in one call, 3 per hour per IP."""

from __future__ import annotations

import re
import time

import pytest
from django.core import mail
from django.test import override_settings
from rest_framework.test import APIClient

from apps.accounts.models import Membership, User

pytestmark = pytest.mark.django_db


def signup(body: dict, ip: str = "10.0.0.1"):
    return APIClient().post("/api/signup", body, format="json", REMOTE_ADDR=ip)


def test_signup_returns_a_working_scoped_key():
    response = signup(
        {
            "email": "agent@yourapp.com",
            "scopes": ["usage.read", "events.write", "proxy.chat"],
            "budget_cents": 5000,
            "budget_period": "month",
        }
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["key"].startswith("obs_")
    assert body["scopes"] == ["usage.read", "events.write", "proxy.chat"]
    assert body["budget_cents"] == 5000 and body["budget_period"] == "month"
    user = User.objects.get(email="agent@yourapp.com")
    assert not user.has_usable_password()
    assert Membership.objects.get(user=user).role == "owner"
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {body['key']}")
    me = api.get("/api/sdk-keys/me").json()
    assert me["budget"]["limitCents"] == 5000
    assert set(me["scopes"]) == {"usage.read", "events.write", "proxy.chat"}


def test_default_scopes_and_expiry():
    body = signup({"email": "b@x.io", "expires_in_seconds": 3600}).json()
    assert body["scopes"] == ["usage.read", "billing.read"]
    assert body["expires_at"] is not None and body["budget_cents"] is None


@pytest.mark.parametrize(
    "scope",
    ["usage.write", "customers.write", "billing.write", "alerts.read", "alerts.write", "admin"],
)
def test_privileged_scopes_are_refused(scope):
    response = signup({"email": "c@x.io", "scopes": ["usage.read", scope]})
    assert response.status_code == 400
    assert "scopes" in response.json()["error"]["fields"]
    assert not User.objects.filter(email="c@x.io").exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "not-an-email"},
        {"email": "d@x.io", "budget_cents": -1},
        {"email": "d@x.io", "budget_period": "week"},
        {"email": "d@x.io", "scopes": "usage.read"},
    ],
)
def test_bad_input_is_400(body):
    response = signup(body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_failed"


def test_existing_email_is_409():
    signup({"email": "e@x.io"})
    response = signup({"email": "E@x.io"})
    assert response.status_code == 409


def test_three_per_hour_per_ip():
    statuses = [signup({"email": f"u{n}@x.io"}, ip="10.9.9.9").status_code for n in range(4)]
    assert statuses == [201, 201, 201, 429]
    limited = signup({"email": "u9@x.io"}, ip="10.9.9.9")
    assert int(limited["Retry-After"]) > 0
    assert signup({"email": "other@x.io"}, ip="10.9.9.10").status_code == 201


@override_settings(TRUST_X_FORWARDED_FOR=False)
def test_forwarded_for_is_ignored_unless_trusted():
    for n in range(3):
        APIClient().post(
            "/api/signup",
            {"email": f"f{n}@x.io"},
            format="json",
            REMOTE_ADDR="10.1.1.1",
            HTTP_X_FORWARDED_FOR=f"1.2.3.{n}",
        )
    response = APIClient().post(
        "/api/signup",
        {"email": "f9@x.io"},
        format="json",
        REMOTE_ADDR="10.1.1.1",
        HTTP_X_FORWARDED_FOR="1.2.3.99",
    )
    assert response.status_code == 429


@pytest.mark.celery
def test_signup_emails_a_set_password_link(celery_worker):
    response = signup({"email": "pw@x.io"})
    assert response.status_code == 201
    deadline = time.monotonic() + 15
    while not mail.outbox and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mail.outbox and mail.outbox[0].to == ["pw@x.io"]
    assert re.search(r"/accounts/password/reset/key/\S+", mail.outbox[0].body)


def test_the_hour_slides_across_the_clock_hour(monkeypatch):
    """Three signups at 10:55 and three more at 11:05 are not six in ten minutes."""
    from types import SimpleNamespace

    from apps.core import ratelimit

    clock = {"now": 1_800_000_000 - 300.0}  # five minutes before a clock hour
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: clock["now"]))
    assert [signup({"email": f"a{n}@x.io"}, ip="10.7.7.7").status_code for n in range(3)] == [
        201,
        201,
        201,
    ]
    clock["now"] += 600  # five minutes into the next clock hour
    refused = signup({"email": "a9@x.io"}, ip="10.7.7.7")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) == 3000  # when the first leaves the hour
    clock["now"] += 3000
    assert signup({"email": "a10@x.io"}, ip="10.7.7.7").status_code == 201
