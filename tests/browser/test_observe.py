"""Observe in a real browser (Debian Chromium): the first event sent with the
onboarding page's curl turns the panel green, shows up in the live tail and moves
the overview; every Observe page renders (screenshots), htmx works under the CSP."""

from __future__ import annotations

import re
import subprocess
import uuid

import pytest
import requests
from playwright.sync_api import expect

from tests.dashboard.conftest import at, event, record_dataset
from tests.events.conftest import (  # noqa: F401  (fixtures)
    _fresh_process_caches,
    catalog,
    catalog_file,
)
from tests.factories import PASSWORD, UserFactory

from .conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, email: str, landing: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(landing))


def overview_figures(page) -> dict[str, str]:
    section = page.locator("section[data-testid=overview]")
    return {name: section.get_attribute(f"data-{name}") for name in ("events", "cost")}


def send(base_url: str, key: str, **fields) -> None:
    body = event(
        "cus_browser", "chat", when=fields.pop("when", None) or at(0, 0), cost="0.25", **fields
    )
    response = requests.post(
        f"{base_url}/api/events/ingest",
        json={"events": [body]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


@pytest.mark.usefixtures("catalog")
def test_first_event_from_the_onboarding_curl(page, live_server):
    user = UserFactory()
    log_in(page, user.email, r"/onboarding/$")
    page.fill("input[name=name]", "Curl Co")
    page.check("input[name=mode][value=observe]")
    page.click("button[type=submit]")
    panel = page.locator("[data-testid=first-event]")
    assert panel.get_attribute("data-state") == "waiting"
    curl = page.locator("[data-testid=onboarding-curl]").inner_text()
    key = re.search(r"sk_test_[0-9a-f]{32}", curl).group(0)
    assert live_server.url in curl

    overview = page.context.new_page()
    overview_errors: list[str] = []
    overview.on("console", lambda m: overview_errors.append(m.text) if m.type == "error" else None)
    overview.goto("/dashboard/")
    assert overview_figures(overview) == {"events": "0", "cost": "0"}

    result = subprocess.run(
        ["bash", "-c", curl], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0 and '"costSource":"catalog"' in result.stdout, result

    page.wait_for_selector("[data-testid=first-event][data-state=received]", timeout=10_000)
    assert "First event received" in panel.inner_text()
    screenshot(page, "onboarding-first-event")

    # The live tail: the event is listed, and the next one appears without a reload.
    overview.goto("/dashboard/events/")
    rows = overview.locator("#event-rows tr[data-event-id], tbody.fresh tr[data-event-id]")
    assert rows.count() == 1
    send(live_server.url, key, idempotencyKey=str(uuid.uuid4()))
    overview.wait_for_selector("tbody.fresh tr[data-event-id]", timeout=10_000)
    assert rows.count() == 2
    overview.click("tbody.fresh a:has-text('How priced')")
    overview.wait_for_selector("tr.event-detail.open .provenance")
    assert "explicit" in overview.locator("tr.event-detail.open").inner_text()
    screenshot(overview, "events-live-tail")

    # The overview moved: 1,200 input + 300 output tokens of gpt-4o (0.006) + 0.25.
    overview.goto("/dashboard/")
    assert overview_figures(overview) == {"events": "2", "cost": "0.256"}
    assert page.console_errors == [] and overview_errors == []


@pytest.mark.usefixtures("catalog")
def test_observe_pages_render_and_work(page, live_server):
    from tests.conftest import make_tenant

    tenant = make_tenant("Screens Co")
    record_dataset(tenant)
    log_in(page, tenant.owner.email, r"/dashboard/$")

    page.wait_for_selector("canvas[data-chart][data-ready='1']")
    assert page.locator("[data-testid=unpriced-banner]").is_visible()
    screenshot(page, "observe-overview")
    # Switching the window swaps the body (htmx) and redraws the chart.
    page.click("a[data-range='7']")
    page.wait_for_url(re.compile(r"range=7"))
    page.wait_for_selector("a[data-range='7'][aria-current]")
    page.wait_for_selector("canvas[data-chart][data-ready='1']")

    page.goto("/dashboard/customers/")
    screenshot(page, "observe-customers")
    # Search as you type: only the table is swapped; the input keeps its focus.
    page.fill("input[name=q]", "cus_b")
    # (Locator assertions: a string wait_for_function would need 'unsafe-eval' under our CSP.)
    expect(page.locator("tr[data-customer]")).to_have_count(1)
    expect(page.locator("tr[data-customer]")).to_have_attribute("data-customer", "cus_b")
    assert page.evaluate("document.activeElement.name") == "q"
    # Keyboard: sort by margin from the header link.
    page.fill("input[name=q]", "")
    expect(page.locator("tr[data-customer]")).to_have_count(4)
    page.focus("th a[data-sort=margin]")
    page.keyboard.press("Enter")
    page.wait_for_selector("th[aria-sort=descending] a[data-sort=margin]")

    page.goto("/dashboard/customers/cus_a")
    screenshot(page, "observe-customer-detail")
    page.goto("/dashboard/features/")
    screenshot(page, "observe-features")
    page.goto("/dashboard/models/")
    screenshot(page, "observe-models")
    page.goto("/dashboard/heatmap/")
    screenshot(page, "observe-heatmap")
    page.goto("/dashboard/events/")
    page.click("[data-testid=more-filters] summary")  # the time filter is folded away
    page.select_option("select[name=since]", "7d")
    page.fill("input[name=customer]", "cus_a")
    page.click("form[data-testid=event-filters] button[type=submit]")
    page.wait_for_url(re.compile(r"customer=cus_a"))
    expect(page.locator("tr[data-event-id]")).to_have_count(2)
    screenshot(page, "observe-events")
    page.goto("/dashboard/traces/t-1")
    screenshot(page, "observe-trace")
    page.goto("/dashboard/settings/model-prices/")
    page.check("input[name=kind][value=discount]")
    page.fill("input[name=model]", "gpt-4o")
    page.fill("input[name=discount_percent]", "12.5")
    page.click("[data-testid=override-save]")
    page.wait_for_selector("tr[data-override][data-kind=discount]")
    screenshot(page, "observe-overrides")

    # Readable on a phone: nothing but the wide tables (which scroll in their box)
    # makes the page wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    for url in ("/dashboard/customers/", "/dashboard/events/", "/dashboard/models/", "/dashboard/"):
        page.goto(url)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, url
    page.wait_for_selector("canvas[data-chart][data-ready='1']")
    screenshot(page, "observe-overview-phone")
    assert page.console_errors == []
