"""Failed logins lock out one account from one address only, answered with 429."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def login(email: str, password: str = PASSWORD, ip: str = "10.3.0.1") -> Any:
    return Client(REMOTE_ADDR=ip).post("/accounts/login/", {"login": email, "password": password})


def fail_five_times(email: str, ip: str = "10.3.0.1") -> None:
    for _ in range(5):
        response = login(email, "wrong", ip=ip)
        assert response.status_code == 200
        assert "not correct" in response.content.decode()


def test_a_lockout_is_429_with_retry_after_and_says_so() -> None:
    user = UserFactory()
    fail_five_times(user.email)
    locked = login(user.email)  # even the right password, from the same address
    assert locked.status_code == 429
    assert 290 <= int(locked["Retry-After"]) <= 300
    page = locked.content.decode()
    assert "Too many failed sign-in attempts" in page and "5 minutes" in page


def test_a_stranger_cannot_lock_the_owner_out() -> None:
    victim = UserFactory()
    fail_five_times(victim.email, ip="203.0.113.9")
    assert login(victim.email, ip="203.0.113.9").status_code == 429
    assert login(victim.email, ip="10.3.0.2").status_code == 302


def test_one_address_is_limited_across_accounts(settings: Any) -> None:
    settings.ACCOUNT_RATE_LIMITS = {
        **settings.ACCOUNT_RATE_LIMITS,
        "login_failed": "3/5m/ip,5/5m/key",
    }
    users = [UserFactory() for _ in range(3)]
    for user in users:
        assert login(user.email, "wrong").status_code == 200
    assert login(UserFactory().email, "wrong").status_code == 429


@pytest.mark.parametrize("trusted", [True, False])
def test_the_address_is_the_one_settings_trust(settings: Any, trusted: bool) -> None:
    settings.TRUST_X_FORWARDED_FOR = trusted
    user = UserFactory()
    for n in range(5):
        Client(REMOTE_ADDR="10.3.0.9", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").post(
            "/accounts/login/", {"login": user.email, "password": "wrong"}
        )
    response = Client(REMOTE_ADDR="10.3.0.9", HTTP_X_FORWARDED_FOR="198.51.100.77").post(
        "/accounts/login/", {"login": user.email, "password": PASSWORD}
    )
    assert response.status_code == (302 if trusted else 429)


def test_a_forged_forwarded_entry_does_not_dodge_the_lockout(settings: Any) -> None:
    """Behind a trusted proxy the client can still write the left of X-Forwarded-For: the
    address that counts is the last entry, the one the proxy appended."""
    settings.TRUST_X_FORWARDED_FOR = True
    user = UserFactory()
    for n in range(5):
        Client(HTTP_X_FORWARDED_FOR=f"203.0.113.{n}, 198.51.100.7").post(
            "/accounts/login/", {"login": user.email, "password": "wrong"}
        )
    response = Client(HTTP_X_FORWARDED_FOR="203.0.113.200, 198.51.100.7").post(
        "/accounts/login/", {"login": user.email, "password": PASSWORD}
    )
    assert response.status_code == 429
