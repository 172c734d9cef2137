"""The browser signup path end to end, through allauth: sign up, verify, sign in,
name the organization, see the test key once, and use it."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core import mail
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.models import Membership, Organization
from apps.apikeys.models import ApiKey

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-and-unusual-passphrase-91"


def _link(message: str) -> str:
    return re.search(r"https?://[^/\s]+(/\S+)", message).group(1)


def test_signup_verify_login_onboard_and_key_shown_once():
    browser = Client()
    response = browser.post(
        "/accounts/signup/",
        {"email": "founder@startup.io", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    # Email verification is mandatory: the dashboard is not reachable yet.
    assert len(mail.outbox) == 1
    assert browser.get("/dashboard/").status_code == 302
    # The email names the product and SITE_URL's domain, not Django's example.com.
    message = mail.outbox[0]
    domain = urlsplit(settings.SITE_URL).netloc
    assert "Hello from Tanso!" in message.body
    assert domain in message.body
    assert "example.com" not in message.body + message.subject
    assert message.subject.startswith("[Tanso] ")

    confirm_path = _link(mail.outbox[0].body)
    assert browser.get(confirm_path).status_code == 200
    response = browser.post(confirm_path)
    assert response.status_code == 302

    browser.logout()
    response = browser.post(
        "/accounts/login/", {"login": "founder@startup.io", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == "/onboarding/"

    response = browser.post("/onboarding/", {"name": "Startup", "mode": "platform"})
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    key = re.search(r"sk_test_[0-9a-f]{32}", response.content.decode()).group(0)
    assert f"Bearer {key}" in response.content.decode()  # the ready-to-paste curl
    assert "/api/v1/client/events" in response.content.decode()

    org = Organization.objects.get(name="Startup")
    assert org.mode == "platform"
    assert Membership.objects.get(organization=org).role == "owner"
    assert set(org.environments.values_list("kind", flat=True)) == {"test", "live"}

    # Shown once: the keys page lists it by prefix, never the secret.
    keys_page = browser.get("/dashboard/keys/").content.decode()
    assert key not in keys_page
    assert key[:16] in keys_page
    assert not ApiKey.objects.filter(secret_hash=key).exists()

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    me = api.get("/api/sdk-keys/me")
    assert me.status_code == 200 and me.json()["environment"] == "test"

    # Onboarding again goes to the dashboard, never a second org by accident.
    assert browser.get("/onboarding/")["Location"] == "/dashboard/"


def test_unverified_user_cannot_sign_in():
    browser = Client()
    browser.post(
        "/accounts/signup/", {"email": "x@y.io", "password1": PASSWORD, "password2": PASSWORD}
    )
    browser.logout()
    response = browser.post("/accounts/login/", {"login": "x@y.io", "password": PASSWORD})
    # allauth sends the user to the "verify your email" page, not into the app.
    assert response.status_code == 302
    assert "confirm-email" in response["Location"] or "verification" in response["Location"]
    assert browser.get("/dashboard/").status_code == 302


def test_password_reset_sends_a_working_link(tenant):
    browser = Client()
    browser.post("/accounts/password/reset/", {"email": tenant.owner.email})
    assert len(mail.outbox) == 1
    path = _link(mail.outbox[0].body)
    follow = browser.get(path, follow=True)
    assert follow.status_code == 200
    form_path = follow.redirect_chain[-1][0] if follow.redirect_chain else path
    response = browser.post(form_path, {"password1": PASSWORD + "x", "password2": PASSWORD + "x"})
    assert response.status_code == 302
    tenant.owner.refresh_from_db()
    assert tenant.owner.check_password(PASSWORD + "x")


def test_login_is_rate_limited(tenant):
    """After 5 failed attempts even the right password is refused for a while."""
    from tests.factories import PASSWORD as RIGHT

    browser = Client()
    for _ in range(6):
        browser.post("/accounts/login/", {"login": tenant.owner.email, "password": "wrong"})
    response = browser.post("/accounts/login/", {"login": tenant.owner.email, "password": RIGHT})
    assert response.status_code in (200, 429)
    assert "too many" in response.content.decode().lower()
    assert browser.get("/dashboard/").status_code == 302


def test_the_verify_page_sends_the_link_again_without_revealing_addresses(tenant):
    browser = Client()
    browser.post(
        "/accounts/signup/",
        {"email": "late@startup.io", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert len(mail.outbox) == 1
    page = browser.get("/accounts/confirm-email/")
    assert page.status_code == 200
    assert b'action="/accounts/verification/resend/"' in page.content

    # The signup email used this address's allowance (one per 3 minutes): nothing new yet.
    response = browser.post("/accounts/verification/resend/", {"email": "late@startup.io"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    cache.clear()  # the 3 minutes have passed
    answer = browser.post(
        "/accounts/verification/resend/", {"email": "LATE@startup.io"}, follow=True
    )
    assert len(mail.outbox) == 2
    assert mail.outbox[1].to == ["late@startup.io"]
    confirm_path = _link(mail.outbox[1].body)
    assert browser.post(confirm_path).status_code == 302  # the new link verifies
    said = answer.content.decode()

    # An unknown or already verified address gets the same words and no email.
    for email in ("nobody@startup.io", tenant.owner.email):
        other = Client().post("/accounts/verification/resend/", {"email": email}, follow=True)
        assert len(mail.outbox) == 2
        assert f"If {email} is waiting for verification" in other.content.decode()
    assert "If LATE@startup.io is waiting for verification" in said
