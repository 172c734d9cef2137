"""The dashboard page: findings ranked by money at stake with evidence, assumptions and
buttons; members decide and compute, viewers read; another organization sees nothing."""

from __future__ import annotations

import pytest

from apps.accounts.models import Role
from apps.recommendations.models import Recommendation
from tests.conftest import web_as
from tests.dashboard.html import find_all

from .conftest import compute, findings, spend

pytestmark = pytest.mark.django_db
PAGE = "/dashboard/recommendations/"


def test_the_page_ranks_findings_and_members_decide(tenant, web, catalog):
    client = tenant.api()
    spend(client, "cus_low", "chat", cost="90", revenue="100")
    spend(client, "cus_worse", "search", cost="50", revenue="10")
    assert web.post(f"{PAGE}compute/").status_code == 302
    page = web.get(PAGE)
    assert page.status_code == 200
    cards = find_all(page.content, "article", data_testid="recommendation")
    assert [card["data-stake"] for card in cards] == ["60.00", "60.00", "47.00", "47.00"]
    assert b"targetMarginPct" in page.content and b"topContributors" not in page.content
    row = findings(tenant.test)["customer:cus_low"]
    assert web.post(f"{PAGE}{row.pk}/dismiss/").status_code == 302
    row.refresh_from_db()
    assert row.status == Recommendation.Status.DISMISSED
    assert str(row.pk) not in web.get(PAGE).content.decode()
    assert str(row.pk) in web.get(PAGE, {"status": "dismissed"}).content.decode()
    assert web.post(f"{PAGE}{row.pk}/snooze/").status_code == 302
    row.refresh_from_db()
    assert row.status == Recommendation.Status.SNOOZED


def test_viewers_read_only_and_outsiders_see_nothing(tenant, outsider, catalog):
    spend(tenant.api(), "cus_low", "chat", cost="90", revenue="100")
    compute(tenant.test)
    row = findings(tenant.test)["customer:cus_low"]
    viewer = web_as(tenant.add_member(Role.VIEWER))
    assert row.title.encode() in viewer.get(PAGE).content
    assert viewer.post(f"{PAGE}{row.pk}/dismiss/").status_code == 403
    stranger = web_as(outsider.owner)
    assert row.title.encode() not in stranger.get(PAGE).content
    assert stranger.post(f"{PAGE}{row.pk}/dismiss/").status_code == 404
    row.refresh_from_db()
    assert row.status == Recommendation.Status.OPEN
