"""The platform pages in a real browser: create a plan, give it a graduated rule (a tier
row added through htmx, the price previewed) and activate it; screenshots of the plans,
plan, subscriptions, invoices and credits pages; no console errors (CSP included)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from apps.billing.services import billing_close_periods
from apps.plans.models import Plan, PlanFeatureRule
from tests.billing.helpers import plan, subscribe, usage, utc
from tests.conftest import make_tenant
from tests.credits.conftest import grant, make_pool
from tests.plans.helpers import make_feature

from .conftest import screenshot
from .test_shell import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_create_a_graduated_plan_and_activate_it(page):
    tenant = make_tenant("Platform Co")
    make_feature(tenant.test, "tokens", unit_label="token")
    pro = plan(tenant.test, "pro", price="49", timing=Plan.BillingTiming.IN_ADVANCE)
    subscribe(tenant.test, pro, at=utc(2026, 3, 1, 9))
    usage(tenant.test, (utc(2026, 3, 20), 300))
    billing_close_periods(now=utc(2026, 4, 1, 0, 5))
    pool = make_pool(tenant.test, "cus_1")
    grant(pool, "100")

    sign_in(page, tenant.owner.email)
    page.click("nav[aria-label=Sections] >> text=Plans")
    expect(page.locator("tr[data-plan=pro]")).to_be_visible()
    page.fill("input[name=key]", "team")
    page.fill("input[name=name]", "Team")
    page.fill("input[name=price_amount]", "19.50")
    page.click("[data-testid=plan-create]")
    page.wait_for_url(re.compile(r"/dashboard/plans/[0-9a-f-]+/$"))
    expect(page.locator("[data-testid=plan-status]")).to_have_attribute("data-status", "draft")

    form = page.locator("[data-testid=rule-form]")
    form.locator("select[name=feature]").select_option("tokens")
    form.locator("select[name=model]").select_option("graduated")
    expect(form.locator("tr[data-tier]")).to_have_count(3)
    page.fill("input[name=tier-0-up_to]", "1000")
    page.fill("input[name=tier-0-unit_price]", "0")
    page.fill("input[name=tier-1-up_to]", "10000")
    page.fill("input[name=tier-1-unit_price]", "0.002")
    page.fill("input[name=tier-1-flat_fee]", "5")
    page.fill("input[name=tier-2-up_to]", "100000")
    page.fill("input[name=tier-2-unit_price]", "0.001")
    page.click("[data-testid=add-tier]")  # htmx swaps the form with one more row
    expect(page.locator("[data-testid=rule-form] tr[data-tier]")).to_have_count(4)
    expect(page.locator("input[name=tier-1-flat_fee]")).to_have_value("5")
    page.fill("input[name=tier-3-unit_price]", "0.0005")
    page.click("[data-testid=rule-preview-button]")
    preview = page.locator("[data-testid=rule-preview]")
    expect(preview).to_contain_text("First 1,000 tokens")
    screenshot(page, "platform-plan-editor")
    page.click("[data-testid=rule-save]")
    expect(page.locator("tr[data-feature=tokens]")).to_have_attribute("data-model", "graduated")
    team = Plan.objects.get(environment=tenant.test, key="team")
    rule = PlanFeatureRule.objects.get(plan=team)
    assert [tier["upTo"] for tier in rule.tiers] == ["1000", "10000", "100000", None]

    page.click("[data-testid=plan-activate]")
    dialog = page.locator("[data-testid=confirm-dialog]")  # activating freezes the terms
    expect(dialog.locator("[data-testid=confirm-consequence]")).to_contain_text("freezes")
    dialog.locator("[data-testid=confirm-yes]").click()
    expect(page.locator("[data-testid=plan-status]")).to_have_attribute("data-status", "active")
    expect(page.locator("[data-testid=rule-form]")).to_have_count(0)  # terms frozen
    team.refresh_from_db()
    assert team.status == Plan.Status.ACTIVE
    screenshot(page, "platform-plan")

    page.click("nav[aria-label=Sections] >> text=Plans")
    expect(page.locator("tr[data-plan=team]")).to_have_attribute("data-status", "active")
    screenshot(page, "platform-plans")
    page.click("nav[aria-label=Sections] >> text=Subscriptions")
    expect(page.locator("tr[data-subscription]")).to_have_count(1)
    screenshot(page, "platform-subscriptions")
    page.click("tr[data-subscription] a >> nth=0")
    expect(page.locator("[data-testid=subscription-status]")).to_be_visible()
    screenshot(page, "platform-subscription")
    page.click("nav[aria-label=Sections] >> text=Invoices")
    expect(page.locator("tr[data-invoice]")).to_have_count(2)
    screenshot(page, "platform-invoices")
    page.click("tr[data-invoice] a >> nth=0")
    expect(page.locator("[data-testid=invoice-total]")).to_be_visible()
    screenshot(page, "platform-invoice")
    page.click("nav[aria-label=Sections] >> text=Credits")
    expect(page.locator(f"tr[data-pool='{pool.pk}']")).to_have_attribute("data-balance", "100")
    screenshot(page, "platform-credits")
    page.click(f"tr[data-pool='{pool.pk}'] >> text=AI_CREDITS")
    expect(page.locator("[data-testid=pool-balance]")).to_have_text("100")
    screenshot(page, "platform-pool")
    page.goto("/dashboard/customers/cus_1")
    expect(page.locator("[data-testid=customer-platform]")).to_have_attribute("data-plan", "pro")
    screenshot(page, "platform-customer")
    assert page.console_errors == []
