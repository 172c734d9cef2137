"""The demo `make run` opens, in a real browser: the demo history loaded by the same
command (``manage.py load_demo``), the demo login signed in, and every page area -- the
overview, customers, features, models, margin map, invoices, credits and a trace --
showing data; no console errors."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from apps.demo.services import DEMO_EMAIL, DEMO_PASSWORD

from .conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def nonzero(locator) -> None:
    """A KPI attribute that holds a positive number."""
    expect(locator).to_have_attribute("data-events", re.compile(r"^[1-9]\d*$"))


def test_the_demo_organization_shows_a_living_business(page):
    out = io.StringIO()
    call_command("load_demo", stdout=out)
    assert "events added" in out.getvalue()

    page.goto("/accounts/login/")
    page.fill("input[name=login]", DEMO_EMAIL)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/$"))
    nonzero(page.locator("[data-testid=overview]"))
    expect(page.locator("[data-testid=overview]")).to_have_attribute(
        "data-customers", re.compile(r"^[1-9]\d*$")
    )
    screenshot(page, "demo-overview")

    sections = page.locator("nav[aria-label=Sections]")
    sections.locator("text=Customers").first.click()
    expect(page.locator("[data-testid=customers-table] tbody tr[data-customer]")).to_have_count(20)
    expect(page.locator("tr[data-customer=cus_123]")).to_have_count(0)
    screenshot(page, "demo-customers")
    page.click("tr[data-customer=cus_northwind] a >> nth=0")
    nonzero(page.locator("[data-testid=customer-totals]"))
    screenshot(page, "demo-customer")

    page.goto("/dashboard/features/")
    expect(page.locator("[data-testid=features-table] tr[data-feature]")).to_have_count(6)
    screenshot(page, "demo-features")

    page.goto("/dashboard/models/")
    models = page.locator("[data-testid=models-table] tr[data-model]")
    for provider in ("openai", "anthropic", "google"):
        expect(models.and_(page.locator(f"[data-provider={provider}]")).first).to_be_visible()
    expect(page.locator("tr[data-model=acme-mt-v2]")).to_have_attribute(
        "data-unpriced", re.compile(r"^[1-9]\d*$")
    )
    screenshot(page, "demo-models")

    page.goto("/dashboard/heatmap/")
    cells = page.locator("[data-testid=heatmap] td.cell[data-cost]")  # filled cells
    expect(cells.first).to_be_visible()
    assert cells.count() >= 20
    bands = {cells.nth(i).get_attribute("data-band") for i in range(cells.count())}
    assert len(bands) >= 2  # margins differ: not one colour
    screenshot(page, "demo-heatmap")

    page.goto("/dashboard/invoices/")
    for status in ("paid", "due", "past_due"):
        expect(page.locator(f"tr[data-invoice][data-status={status}]").first).to_be_visible()
    screenshot(page, "demo-invoices")

    page.goto("/dashboard/credits/")
    expect(page.locator("tr[data-pool]").first).to_be_visible()
    assert page.locator("tr[data-pool]").count() >= 4
    screenshot(page, "demo-credits")

    # A research-agent run, reached from the events list filtered to the agent feature.
    page.goto("/dashboard/events/?feature=agent")
    link = page.locator("a[href*='/dashboard/traces/']").first
    expect(link).to_be_visible()
    link.click()
    page.wait_for_url(re.compile(r"/dashboard/traces/"))
    totals = page.locator("[data-testid=trace-totals]")
    expect(totals).to_have_attribute("data-events", re.compile(r"^[3-9]$"))
    expect(page.locator("[data-testid=trace-table] tr[data-event-id]")).to_have_count(
        int(totals.get_attribute("data-events") or 0)
    )
    screenshot(page, "demo-trace")
    assert page.console_errors == []
