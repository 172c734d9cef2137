"""Who sees what on the Observe and model price pages.

* an outsider (another organization) gets 404 on every URL naming the tenant's
  objects, and its own pages show none of the tenant's data;
* the other environment (live vs test) shows none of this one's data;
* a viewer reads everything but changes nothing (403, the dashboard's convention);
* signed-out visitors are sent to log in.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from apps.accounts.models import Role
from apps.events.models import RecostRun
from apps.pricing.models import ModelPriceOverride
from apps.pricing.services import override_create
from tests.conftest import web_as

from .html import find_all

pytestmark = pytest.mark.django_db

PAGES = [
    "/dashboard/",
    "/dashboard/customers/",
    "/dashboard/features/",
    "/dashboard/models/",
    "/dashboard/heatmap/",
    "/dashboard/events/",
    "/dashboard/settings/model-prices/",
    "/dashboard/first-event/",
]
EXPORTS = [
    "/dashboard/export/customers.csv",
    "/dashboard/export/features.csv",
    "/dashboard/export/models.csv",
    "/dashboard/export/events.csv",
]


def object_urls(tenant, dataset) -> list[str]:
    override = override_create(
        environment=tenant.test, model="gpt-4o", discount_percent=Decimal("10")
    )
    return [
        "/dashboard/customers/cus_a",
        f"/dashboard/events/{dataset.e1}/",
        "/dashboard/traces/t-1",
        f"/dashboard/settings/model-prices/{override.pk}/",
    ], override


# (The trace by its link: "t-1" alone is also in ids like "event-1234".)
TENANT_MARKERS = (b"cus_a", b"cus_b", b"cus_c", b"cus_d", b"/traces/t-1", b"mystery-1")


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.MEMBER, Role.VIEWER])
def test_every_role_reads_every_page(tenant, dataset, role):
    user = tenant.owner if role == Role.OWNER else tenant.add_member(role)
    browser = web_as(user)
    urls, _ = object_urls(tenant, dataset)
    for url in PAGES + EXPORTS + urls:
        response = browser.get(url)
        assert response.status_code == 200, url


def test_signed_out_visitors_are_sent_to_log_in(tenant, dataset):
    urls, _ = object_urls(tenant, dataset)
    for url in PAGES + EXPORTS + urls:
        response = Client().get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/")


def test_outsider_gets_404_on_the_tenants_objects(tenant, outsider, dataset, outsider_data):
    urls, override = object_urls(tenant, dataset)
    spy = web_as(outsider.owner)
    for url in urls:
        assert spy.get(url).status_code == 404, url
    assert spy.post(f"/dashboard/settings/model-prices/{override.pk}/delete/").status_code == 404
    assert (
        spy.post(
            f"/dashboard/settings/model-prices/{override.pk}/",
            {"kind": "discount", "model": "gpt-4o", "discount_percent": "50"},
        ).status_code
        == 404
    )
    assert ModelPriceOverride.objects.filter(
        pk=override.pk, discount_percent=Decimal("10")
    ).exists()


def test_outsider_pages_show_none_of_the_tenants_data(tenant, outsider, dataset, outsider_data):
    spy = web_as(outsider.owner)
    for url in [*PAGES, "/dashboard/?range=90", "/dashboard/customers/?range=90"]:
        content = spy.get(url).content
        for marker in TENANT_MARKERS:
            assert marker not in content, (url, marker)
    own = spy.get("/dashboard/customers/").content
    assert [r["data-customer"] for r in find_all(own, "tr", data_customer=None)] == ["cus_outsider"]
    # And the tenant sees none of the outsider's.
    mine = web_as(tenant.owner)
    for url in PAGES + EXPORTS:
        response = mine.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert b"cus_outsider" not in body and b"secret_feature" not in body, url
    assert mine.get("/dashboard/traces/t-out").status_code == 404
    assert mine.get(f"/dashboard/events/{outsider_data[0]}/").status_code == 404


def test_the_live_environment_sees_none_of_the_test_data(tenant, web, dataset):
    web.post("/dashboard/switch-environment/", {"env": "live"})
    content = web.get("/dashboard/?range=90").content
    shown = find_all(content, "section", data_testid="overview")[0]
    assert shown["data-events"] == "1"  # the one live event only
    for url in PAGES:
        content = web.get(url).content
        for marker in TENANT_MARKERS:
            assert marker not in content, (url, marker)
    assert b"cus_live_only" in web.get("/dashboard/customers/").content
    assert web.get("/dashboard/customers/cus_a").status_code == 404
    assert web.get(f"/dashboard/events/{dataset.e1}/").status_code == 404
    assert web.get("/dashboard/traces/t-1").status_code == 404
    # And back in test, the live event is nowhere.
    web.post("/dashboard/switch-environment/", {"env": "test"})
    for url in PAGES:
        assert b"cus_live_only" not in web.get(url).content


def test_viewer_cannot_change_prices_nor_recost(tenant, dataset):
    override = override_create(
        environment=tenant.test, model="gpt-4o", discount_percent=Decimal("10")
    )
    viewer = web_as(tenant.add_member(Role.VIEWER))
    base = "/dashboard/settings/model-prices"
    create = {"kind": "discount", "provider": "openai", "discount_percent": "20"}
    assert viewer.post(f"{base}/new/", create).status_code == 403
    assert viewer.post(f"{base}/{override.pk}/", create).status_code == 403
    assert viewer.post(f"{base}/{override.pk}/delete/").status_code == 403
    assert viewer.post(f"{base}/recost/").status_code == 403
    override.refresh_from_db()
    assert override.discount_percent == 10
    assert ModelPriceOverride.objects.filter(environment=tenant.test).count() == 1
    assert not RecostRun.objects.filter(environment=tenant.test).exists()
    # The page says so, and offers no form or button.
    page = viewer.get(f"{base}/").content
    assert b'data-testid="override-form"' not in page
    assert b'data-testid="recost-button"' not in page
    assert b"viewer" in page
