"""Every main page at a laptop's 1366x900 and a phone's 390x844 in Chromium: nothing
makes the page scroll sideways (wide tables scroll inside their box, with the row's name
and its action pinned), the primary actions are on screen, the phone's Menu button
opens the sections; a screenshot of each page at both sizes (artifacts/screenshots/,
git-ignored; kept by CI as artifacts)."""

from __future__ import annotations

import re

import pytest

from apps.accounts.models import Organization
from apps.apikeys.models import ApiKey
from apps.customers.models import Customer
from tests.conftest import make_tenant
from tests.dashboard.conftest import record_dataset
from tests.events.conftest import (  # noqa: F401  (fixtures: the price catalog)
    _fresh_process_caches,
    catalog,
    catalog_file,
)
from tests.factories import PASSWORD, make_key

from .conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


def _pages(event_id: int) -> dict[str, str]:
    return {
        "overview": "/dashboard/",
        "customers": "/dashboard/customers/",
        "customer": "/dashboard/customers/cus_a",
        "features": "/dashboard/features/",
        "models": "/dashboard/models/",
        "heatmap": "/dashboard/heatmap/",
        "events": "/dashboard/events/",
        "event": f"/dashboard/events/{event_id}/",
        "trace": "/dashboard/traces/t-1",
        "plans": "/dashboard/plans/",
        "subscriptions": "/dashboard/subscriptions/",
        "invoices": "/dashboard/invoices/",
        "credits": "/dashboard/credits/",
        "keys": "/dashboard/keys/",
        "members": "/dashboard/members/",
        "audit": "/dashboard/audit/",
        "settings": "/dashboard/settings/",
        "model-prices": "/dashboard/settings/model-prices/",
        "stripe": "/dashboard/settings/stripe/",
        "not-found": "/dashboard/customers/cus_nobody",
    }


def _setup(page) -> dict[str, str]:
    tenant = make_tenant("Layout Co")
    dataset = record_dataset(tenant)
    # Long names, the kind that widen tables.
    Customer.objects.filter(environment=tenant.test, reference_id="cus_a").update(
        first_name="Bartholomew",
        last_name="Featherstonehaugh-Worthington",
        email="bartholomew.featherstonehaugh@enterprise-customer.example",
    )
    for scopes in (["events.write", "events.read", "usage.read", "customers.read"], ["admin"]):
        make_key(tenant.test, "obs", scopes=scopes, name="a key with a rather long name")
    page.goto("/accounts/login/")
    page.fill("input[name=login]", tenant.owner.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/$"))
    return _pages(dataset.e1)


def _page_width(page) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))


def _right_edge(locator) -> float:
    box = locator.bounding_box()
    assert box is not None
    return box["x"] + box["width"]


@pytest.mark.usefixtures("catalog")
def test_no_main_page_scrolls_sideways_at_1366_and_actions_are_in_view(page):
    pages = _setup(page)
    page.set_viewport_size(LAPTOP)
    for name, url in pages.items():
        response = page.goto(url)
        assert response is not None
        assert response.status == (404 if name == "not-found" else 200), url
        assert _page_width(page) <= LAPTOP["width"], f"{url} scrolls sideways"
        screenshot(page, f"layout-1366-{name}")
    page.console_errors.clear()  # the not-found page's own 404
    # On a laptop the sections are a sidebar: no Menu button.
    page.goto(pages["overview"])
    assert page.locator("nav#sections").is_visible()
    assert not page.locator("[data-testid=nav-toggle]").is_visible()

    # The keys' Revoke button, the customers' band, the events' margin and the link to an
    # event's detail: all on screen without scrolling anything sideways.
    page.goto(pages["keys"])
    key = ApiKey.objects.filter(kind="obs").first()
    revoke = page.locator(f"[data-testid='revoke-{key.prefix}']")
    assert revoke.is_visible() and _right_edge(revoke) <= LAPTOP["width"]
    page.goto(pages["customers"])
    band = page.locator("tr[data-customer=cus_a] .band")
    assert band.is_visible() and _right_edge(band) <= LAPTOP["width"]
    page.goto(pages["events"])
    first = page.locator("tr[data-event-id]").first
    event_id = first.get_attribute("data-event-id")
    link = page.locator(f"[data-testid='event-link-{event_id}']")
    assert _right_edge(link) <= LAPTOP["width"]
    margin = first.locator("td").nth(4)
    assert _right_edge(margin) <= LAPTOP["width"]
    link.click()
    page.wait_for_url(re.compile(rf"/dashboard/events/{event_id}/$"))
    assert page.console_errors == []


@pytest.mark.usefixtures("catalog")
def test_phone_pages_fit_and_the_menu_opens_and_navigates(page):
    pages = _setup(page)
    page.set_viewport_size(PHONE)
    for name, url in pages.items():
        page.goto(url)
        assert _page_width(page) <= PHONE["width"], f"{url} scrolls sideways on a phone"
        screenshot(page, f"layout-390-{name}")
    page.console_errors.clear()  # the not-found page's own 404

    page.goto(pages["overview"])
    sections = page.locator("nav#sections")
    menu = page.locator("[data-testid=nav-toggle]")
    # Folded: the page's content starts near the top, not under 18 links.
    assert not sections.is_visible()
    assert menu.is_visible()
    heading = page.locator("main h1").first.bounding_box()
    assert heading is not None and heading["y"] < 300
    menu.click()
    assert sections.is_visible()
    screenshot(page, "layout-390-menu-open")
    sections.get_by_role("link", name="Customers").click()
    page.wait_for_url(re.compile(r"/dashboard/customers/$"))
    assert not page.locator("nav#sections").is_visible()  # folded again on the new page

    # The keyboard reaches the menu, with a visible focus ring.
    page.goto(pages["overview"])
    for _ in range(20):  # Tab through the top bar to the Menu button
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "nav-toggle":
            break
    assert page.evaluate("document.activeElement.id") == "nav-toggle"
    outline = page.evaluate(
        "getComputedStyle(document.querySelector('.nav-toggle-label')).outlineWidth"
    )
    assert outline == "3px"
    page.keyboard.press("Space")
    assert page.locator("nav#sections").is_visible()

    # The events filter form is short: only the customer field until "More filters".
    page.goto(pages["events"])
    form = page.locator("form[data-testid=event-filters]").bounding_box()
    assert form is not None and form["height"] < 300
    assert not page.locator("select[name=since]").is_visible()
    page.click("[data-testid=more-filters] summary")
    assert page.locator("select[name=since]").is_visible()
    assert page.console_errors == []


@pytest.mark.usefixtures("catalog")
def test_an_observe_organization_has_no_platform_links(page):
    _setup(page)
    Organization.objects.filter(name="Layout Co").update(mode="observe")
    page.set_viewport_size(LAPTOP)
    page.goto("/dashboard/")
    nav = page.locator("nav#sections")
    assert nav.get_by_role("link", name="Plans", exact=True).count() == 0
    assert nav.locator("[data-testid=nav-platform-off]").is_visible()
    screenshot(page, "layout-1366-observe-menu")


@pytest.mark.usefixtures("catalog")
def test_copy_buttons_copy_the_one_time_key(page):
    _setup(page)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.set_viewport_size(LAPTOP)
    page.goto("/dashboard/keys/")
    page.select_option("select[name=kind]", "obs")
    page.check("input[name=scopes][value='events.write']")
    page.click("button:has-text('Create key')")
    secret = page.locator("[data-testid=new-key]").inner_text().strip()
    page.click("[data-testid=copy-new-key]")
    page.wait_for_selector("[data-testid=copy-new-key][data-copied='1']")
    assert page.evaluate("navigator.clipboard.readText()") == secret
