"""The target margin: a setting of each environment (default 70 %), read and written
through GET/PATCH /api/analytics/settings and the settings page, and used by the bands."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.analytics.selectors import target_margin
from tests.conftest import web_as
from tests.dashboard.html import find_one

URL = "/api/analytics/settings"
pytestmark = pytest.mark.django_db


def test_default_read_and_write(tenant):
    client = tenant.api()
    assert client.get(URL).json() == {"targetMarginPct": "70"}
    response = client.patch(URL, {"targetMarginPct": "55.5"}, format="json")
    assert response.status_code == 200, response.content
    assert Decimal(response.json()["targetMarginPct"]) == Decimal("55.5")
    assert Decimal(client.get(URL).json()["targetMarginPct"]) == Decimal("55.5")
    assert target_margin(tenant.test) == Decimal("55.50")


@pytest.mark.parametrize(
    "body",
    [{"targetMarginPct": "101"}, {"targetMarginPct": "-1"}, {"targetMarginPct": "abc"}, ["x"]],
)
def test_bad_values_are_a_400(tenant, body):
    response = tenant.api().patch(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_failed"
    assert target_margin(tenant.test) == Decimal(70)


def test_an_empty_patch_changes_nothing(tenant):
    response = tenant.api().patch(URL, {}, format="json")
    assert response.status_code == 200
    assert Decimal(response.json()["targetMarginPct"]) == Decimal(70)
    assert target_margin(tenant.test) == Decimal(70)


def test_each_environment_has_its_own(tenant, outsider):
    tenant.api().patch(URL, {"targetMarginPct": "40"}, format="json")
    assert target_margin(tenant.live) == Decimal(70)
    assert Decimal(tenant.api(tenant.sk_live).get(URL).json()["targetMarginPct"]) == 70
    assert Decimal(outsider.api().get(URL).json()["targetMarginPct"]) == 70


def test_the_settings_page_shows_and_changes_it(tenant, web):
    page = web.get("/dashboard/settings/").content
    field = find_one(page, "input", id="target-margin-pct")
    assert Decimal(field["value"]) == 70
    response = web.post("/dashboard/settings/target-margin/", {"target_margin_pct": "62.5"})
    assert response.status_code == 302
    assert target_margin(tenant.test) == Decimal("62.50")
    assert Decimal(
        find_one(web.get("/dashboard/settings/").content, "input", id="target-margin-pct")["value"]
    ) == Decimal("62.5")
    # Out of range: refused, kept.
    web.post("/dashboard/settings/target-margin/", {"target_margin_pct": "150"})
    assert target_margin(tenant.test) == Decimal("62.50")
    # The overview's legend says which target the bands use.
    legend = find_one(web.get("/dashboard/").content, data_testid="band-legend")
    assert Decimal(legend["data-target-margin"]) == Decimal("62.5")


def test_members_cannot_change_it(tenant):
    member = web_as(tenant.add_member())
    assert (
        member.post("/dashboard/settings/target-margin/", {"target_margin_pct": "10"}).status_code
        == 403
    )
    assert target_margin(tenant.test) == Decimal(70)
