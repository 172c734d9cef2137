"""Sign up and verify the email address in a real browser, ending on onboarding (the
onboarding itself, through the first event, is in test_observe)."""

from __future__ import annotations

import re
import time

import pytest
from django.core import mail

from apps.accounts.models import User

from .conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-and-unusual-passphrase-91"


def test_sign_up_verify_and_reach_onboarding(page):
    page.goto("/accounts/signup/")
    page.fill("input[name=email]", "founder@browser.io")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("button[type=submit]")
    deadline = time.monotonic() + 10
    while not mail.outbox and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [m.to for m in mail.outbox] == [["founder@browser.io"]]
    assert not User.objects.get(email="founder@browser.io").emailaddress_set.get().verified
    # Not verified yet: the dashboard sends the visitor away.
    page.goto("/dashboard/")
    assert "/accounts/login/" in page.url

    link = re.search(r"https?://[^/\s]+(/\S+)", mail.outbox[0].body).group(1)
    page.goto(link)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    if "/onboarding/" not in page.url:
        page.goto("/accounts/login/")
        page.fill("input[name=login]", "founder@browser.io")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/onboarding/$"))
    assert User.objects.get(email="founder@browser.io").emailaddress_set.get().verified
    assert page.locator("input[name=mode][value=observe]").count() == 1
    screenshot(page, "onboarding")
    assert page.console_errors == []
