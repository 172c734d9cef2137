"""Settings → Stripe in a real browser: paste a key of the Stripe peer, see it connected
(last 4 characters only, the webhook endpoint made in Stripe), choose a mode, disconnect;
no console errors (CSP included); screenshots of each state."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from apps.billing.services import billing_settings_get
from apps.stripe_sync.models import StripeConnection
from tests.conftest import make_tenant

from .conftest import screenshot
from .test_shell import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_connect_stripe_in_the_settings_page(page, stripe_peer, settings):
    settings.STRIPE_WEBHOOK_BASE_URL = "https://tanso.example"
    tenant = make_tenant("Stripe Co")
    key = stripe_peer.new_key()

    sign_in(page, tenant.owner.email)
    page.click("nav[aria-label=Sections] >> text=Stripe")
    page.wait_for_url(re.compile(r"/dashboard/settings/stripe/$"))
    connection = page.locator("[data-testid=stripe-connection]")
    expect(connection).to_have_attribute("data-connected", "false")
    screenshot(page, "settings-stripe-empty")

    # A key Stripe refuses is said next to the field; nothing is stored.
    page.fill("#stripe-key", "rk_test_" + "a" * 24)
    page.click("[data-testid=stripe-connect]")
    expect(page.locator("[data-testid=stripe-key-error]")).to_contain_text("Stripe refused")
    assert not StripeConnection.objects.exists()
    # The browser notes the page's 400 answer; nothing else may fail.
    assert [e for e in page.console_errors if "status of 400" not in e] == []
    page.console_errors.clear()

    page.fill("#stripe-key", key)
    page.click("[data-testid=stripe-connect]")
    expect(connection).to_have_attribute("data-connected", "true")
    expect(connection).to_have_attribute("data-key-last4", key[-4:])
    expect(page.locator("[data-testid=stripe-status]")).to_have_text("Connected")
    expect(page.locator("[data-testid=stripe-key]")).to_contain_text(key[-4:])
    assert key not in page.content()
    url = page.locator("[data-testid=stripe-webhook-url]").input_value()
    assert url.startswith("https://tanso.example/stripe/webhook/")
    expect(page.locator("[data-testid=stripe-webhook]")).to_have_attribute("data-source", "stripe")
    listed = stripe_peer.client(key).v1.webhook_endpoints.list()
    assert [e.url for e in listed.data] == [url]
    screenshot(page, "settings-stripe-connected")

    page.check("[data-testid=stripe-mode-pass_through]")
    page.click("[data-testid=stripe-mode-save]")
    expect(connection).to_have_attribute("data-mode", "pass_through")
    assert billing_settings_get(tenant.test).stripe_mode == "pass_through"

    page.check("[data-testid=stripe-mode-import]")
    page.click("[data-testid=stripe-mode-save]")
    expect(page.locator("[data-testid=stripe-import]")).to_be_visible()
    screenshot(page, "settings-stripe-import")

    page.click("[data-testid=stripe-disconnect]")
    page.locator("[data-testid=confirm-dialog] [data-testid=confirm-yes]").click()
    expect(connection).to_have_attribute("data-connected", "false")
    expect(connection).to_have_attribute("data-mode", "none")
    assert not StripeConnection.objects.exists()
    assert page.console_errors == []
