"""A Platform operator's day in Chromium, without the API for anything an operator does:
create a customer and a feature, a plan with a graduated rule and a cap, activate it
(confirming), subscribe the customer, see usage against the cap (events sent through the
API with the environment's key, as the integrator's code does), upgrade with the proration
shown, grant credits, issue and mark paid an invoice, revoke a key (confirming).

Run twice: at 1366x900 and at phone size (390x844), where every control must be reached
too. Screenshots of every page visited go to artifacts/screenshots/ (git-ignored),
``day-<size>-<page>.png``. The invoice is issued by the billing cycle task, run here as
its 5-minute schedule would."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import expect

from apps.apikeys.models import ApiKey
from apps.billing.models import Invoice
from apps.billing.tasks import run_billing_cycle
from apps.credits.models import CreditPool
from apps.plans.models import Plan, PlanFeatureRule
from apps.subscriptions.models import Subscription
from tests.conftest import make_tenant

from .conftest import screenshot
from .test_shell import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES = {"desktop": (1366, 900), "phone": (390, 844)}


def nav(page: Any, label: str) -> None:
    """Follow a link of the sections navigation (opening it first where it is collapsed)."""
    link = page.locator("nav[aria-label=Sections]").get_by_role("link", name=label, exact=True)
    if not link.is_visible():
        toggle = page.locator("[data-testid=nav-toggle], nav[aria-label=Sections] summary")
        if toggle.count() and toggle.first.is_visible():
            toggle.first.click()
    link.click()


def tap(page: Any, selector: str) -> None:
    """Click a control after checking a person can reach it: visible, inside the page's
    width (no horizontal scrolling needed), enabled."""
    control = page.locator(selector)
    control.scroll_into_view_if_needed()
    expect(control).to_be_visible()
    expect(control).to_be_enabled()
    box = control.bounding_box()
    width = page.viewport_size["width"]
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (
        selector,
        box,
        width,
    )
    control.click()


def confirm(page: Any, consequence: str) -> None:
    """The confirmation dialog (htmx) names the consequence; confirm it."""
    dialog = page.locator("[data-testid=confirm-dialog]").last
    expect(dialog).to_be_visible()
    expect(dialog.locator("[data-testid=confirm-consequence]")).to_contain_text(consequence)
    dialog.locator("[data-testid=confirm-yes]").click()


def send_events(page: Any, key: str, customer: str, units: list[int]) -> None:
    """The integrator's events, through the API with the environment's key (Playwright's
    request client, over loopback to the live server)."""
    for n in units:
        response = page.request.post(
            "/api/v1/client/events",
            data={
                "eventName": "completion",
                "customerReferenceId": customer,
                "featureKey": "tokens",
                "usageUnits": str(n),
                "costAmount": "0.002",
                "idempotencyKey": str(uuid.uuid4()),
            },
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status in (200, 201), response.text()


def create_plan(page: Any, key: str, price: str, shot: str | None = None) -> None:
    nav(page, "Plans")
    page.fill("input[name=key]", key)
    page.fill("input[name=name]", key.title())
    page.fill("input[name=price_amount]", price)
    tap(page, "[data-testid=plan-create]")
    page.wait_for_url(re.compile(r"/dashboard/plans/[0-9a-f-]+/$"))
    form = page.locator("[data-testid=rule-form]")
    form.locator("select[name=feature]").select_option("tokens")
    form.locator("select[name=model]").select_option("graduated")
    page.fill("input[name=tier-0-up_to]", "1000")
    page.fill("input[name=tier-0-unit_price]", "0")
    page.fill("input[name=tier-1-up_to]", "")
    page.fill("input[name=tier-1-unit_price]", "0.01")
    page.fill("input[name=max_usage]", "5000")
    tap(page, "[data-testid=rule-preview-button]")
    expect(page.locator("[data-testid=rule-preview]")).to_contain_text("First 1,000 tokens")
    if shot:
        screenshot(page, shot)
    tap(page, "[data-testid=rule-save]")
    expect(page.locator("tr[data-feature=tokens]")).to_have_attribute(
        "data-max-usage", re.compile(r"^5000(\.0+)?$")
    )
    tap(page, "[data-testid=plan-activate]")
    confirm(page, "freezes the plan's terms")
    expect(page.locator("[data-testid=plan-status]")).to_have_attribute("data-status", "active")


@pytest.mark.parametrize("size", list(SIZES))
def test_an_operators_day(browser, live_server, size):
    width, height = SIZES[size]
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": width, "height": height}
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    shot = f"day-{size}"
    tenant = make_tenant(f"Operator {size}")
    try:
        sign_in(page, tenant.owner.email)

        # A customer.
        nav(page, "Customers")
        tap(page, "[data-testid=customer-new]")
        page.fill("[data-testid=customer-reference]", "wayne-ent")
        page.fill("[data-testid=customer-email]", "bruce@wayne.example")
        screenshot(page, f"{shot}-customer-new")
        tap(page, "[data-testid=customer-save]")
        page.wait_for_url(re.compile(r"/dashboard/customers/wayne-ent$"))

        # A feature: the plan editor says why its list is empty until there is one.
        nav(page, "Plans")
        page.fill("input[name=key]", "scratch")
        page.fill("input[name=name]", "Scratch")
        tap(page, "[data-testid=plan-create]")
        expect(page.locator("[data-testid=no-features]")).to_be_visible()
        screenshot(page, f"{shot}-plan-no-features")
        page.locator("[data-testid=no-features] a").click()
        page.fill("[data-testid=feature-key]", "tokens")
        page.fill("[data-testid=feature-name]", "Tokens")
        page.fill("[data-testid=feature-unit]", "token")
        tap(page, "[data-testid=feature-save]")
        expect(page.locator("tr[data-feature=tokens]")).to_be_visible()
        screenshot(page, f"{shot}-features")

        # Two plans with a graduated rule and a cap, activated (confirming).
        create_plan(page, "growth", "49", shot=f"{shot}-plan-editor")
        screenshot(page, f"{shot}-plan")
        create_plan(page, "scale", "199")
        growth = Plan.objects.get(environment=tenant.test, key="growth")
        rule = PlanFeatureRule.objects.get(plan=growth)
        assert rule.model == "graduated" and rule.max_usage == Decimal(5000)

        # Subscribe the customer from its page.
        page.goto("/dashboard/customers/wayne-ent")
        tap(page, "[data-testid=customer-subscribe]")
        page.locator("[data-testid=subscribe-plan]").select_option(str(growth.pk))
        screenshot(page, f"{shot}-subscribe")
        tap(page, "[data-testid=subscribe-submit]")
        expect(page.locator("[data-testid=subscription-status]")).to_have_attribute(
            "data-status", "active"
        )
        sub = Subscription.objects.get(environment=tenant.test, customer__reference_id="wayne-ent")

        # Usage against the cap: the integrator's events, then the customer's page.
        send_events(page, tenant.sk_test, "wayne-ent", [400, 800])
        page.goto("/dashboard/customers/wayne-ent")
        usage = page.locator("[data-testid=customer-usage] tr[data-feature=tokens]")
        expect(usage).to_have_attribute("data-used", re.compile(r"^1200(\.0+)?$"))
        expect(usage).to_have_attribute("data-limit", re.compile(r"^5000(\.0+)?$"))
        screenshot(page, f"{shot}-customer-usage")

        # Upgrade now, with the proration shown before confirming.
        nav(page, "Subscriptions")
        page.locator(f"tr[data-subscription='{sub.pk}'] a").first.click()
        scale = Plan.objects.get(environment=tenant.test, key="scale")
        page.locator("[data-testid=change-plan-select]").select_option(str(scale.pk))
        page.locator("[data-testid=change-timing]").select_option("now")
        tap(page, "[data-testid=subscription-change]")
        dialog = page.locator("[data-testid=confirm-dialog]").last
        expect(dialog.locator("[data-testid=proration]")).to_have_attribute("data-timing", "now")
        total = Decimal(dialog.locator("[data-testid=proration]").get_attribute("data-total"))
        assert total > 0
        screenshot(page, f"{shot}-upgrade-proration")
        dialog.locator("[data-testid=confirm-yes]").click()
        expect(page.locator("h1 code")).to_have_text("scale")
        sub.refresh_from_db()
        assert sub.plan.key == "scale"

        # Grant credits: a credit model first, then the grant.
        nav(page, "Credits")
        expect(page.locator("[data-testid=no-credit-models]")).to_be_visible()
        tap(page, "[data-testid=credit-models-link]")
        page.fill("[data-testid=model-denomination]", "AI_CREDITS")
        page.fill("[data-testid=model-name]", "AI credits")
        tap(page, "[data-testid=model-save]")
        expect(page.locator("tr[data-denomination=AI_CREDITS]")).to_be_visible()
        screenshot(page, f"{shot}-credit-models")
        nav(page, "Credits")
        page.fill("[data-testid=grant-customer]", "wayne-ent")
        page.fill("[data-testid=grant-amount]", "250")
        tap(page, "[data-testid=grant-submit]")
        expect(page.locator("[data-testid=pool-balance]")).to_have_text(re.compile(r"^250(\.0+)?$"))
        screenshot(page, f"{shot}-credit-pool")
        assert CreditPool.objects.get(environment=tenant.test).balance == Decimal(250)

        # The billing cycle issues the upgrade's proration invoice; mark it paid (confirming).
        run_billing_cycle()
        nav(page, "Invoices")
        first = page.locator("tr[data-invoice] a").first
        expect(first).to_be_visible()
        screenshot(page, f"{shot}-invoices")
        first.click()
        page.fill("input[name=reference]", "wire 2026-12")
        tap(page, "[data-testid=invoice-pay]")
        confirm(page, "A paid invoice cannot be reopened")
        expect(page.locator("span[data-status=paid]")).to_be_visible()
        screenshot(page, f"{shot}-invoice-paid")
        assert Invoice.objects.filter(subscription=sub, status=Invoice.Status.PAID).exists()

        # Revoke a key (confirming).
        nav(page, "API keys")
        key = ApiKey.objects.filter(environment=tenant.test, revoked_at__isnull=True).first()
        assert key is not None
        tap(page, f"[data-testid='revoke-{key.prefix}']")
        confirm(page, "Every request made with this key is refused")
        page.wait_for_url(re.compile(r"/dashboard/keys/$"))
        key.refresh_from_db()
        assert key.revoked_at is not None
        screenshot(page, f"{shot}-keys")
        assert errors == []
    finally:
        context.close()
