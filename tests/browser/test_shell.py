"""The dashboard shell in a real browser: sign in, create a key (shown once),
revoke it, switch environments; no console errors (CSP included)."""

from __future__ import annotations

import re

import pytest

from apps.apikeys.models import ApiKey
from tests.conftest import make_tenant
from tests.factories import PASSWORD

from .conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in(page, email: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/$"))


def test_sign_in_create_key_once_and_revoke(page):
    tenant = make_tenant("Browser Co")
    page.goto("/")
    screenshot(page, "landing")
    sign_in(page, tenant.owner.email)
    assert "Browser Co" in page.content()
    screenshot(page, "dashboard-home")

    page.click("text=API keys")
    page.select_option("select[name=kind]", "obs")
    page.fill("input[name=name]", "from-the-browser")
    page.check("input[name=scopes][value='events.write']")
    page.click("button:has-text('Create key')")
    secret = page.locator("[data-testid=new-key]").inner_text().strip()
    assert re.fullmatch(r"obs_[0-9a-f]{32}", secret)
    screenshot(page, "keys-created")

    page.goto("/dashboard/keys/")
    assert secret not in page.content()
    key = ApiKey.objects.get(name="from-the-browser")
    page.click(f"[data-testid='revoke-{key.prefix}']")
    page.locator("[data-testid=confirm-dialog] [data-testid=confirm-yes]").click()
    page.wait_for_url(re.compile(r"/dashboard/keys/$"))
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert "revoked" in page.content()

    page.click("button:has-text('Switch to live')")
    assert page.locator("[data-testid=current-env]").inner_text().startswith("Live")
    assert page.console_errors == []


def test_signup_page_renders_with_our_assets(page):
    page.goto("/accounts/signup/")
    assert page.locator("input[name=email]").is_visible()
    # htmx loaded from our static files under the CSP (no CDN, no console errors).
    assert page.evaluate("typeof window.htmx") == "object"
    screenshot(page, "signup")
    assert page.console_errors == []
