"""The dashboard's alerts page: the inbox with its unread badge, filters, acknowledge;
roles and other organizations."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.accounts.models import Role
from apps.alerts.evaluator import rule_evaluate
from apps.alerts.models import Metric, Operator, Window
from apps.alerts.services import rule_create
from tests.alerts.helpers import ingest
from tests.conftest import web_as

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC)


def fired(env):
    rule = rule_create(
        environment=env,
        name="Cost above $1",
        metric=Metric.COST,
        window=Window.DAY,
        operator=Operator.GT,
        thresholds=[{"value": "1", "severity": "critical"}],
        channels=["dashboard"],
    )
    ingest(env, cost="2.5", at=NOON - dt.timedelta(hours=1))
    (notification,) = rule_evaluate(rule=rule, now=NOON)
    return notification


def test_the_inbox_shows_unacknowledged_alerts_and_acknowledges_them(tenant, web):
    notification = fired(tenant.test)
    page = web.get("/dashboard/alerts/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="unread-badge" aria-label="1 unacknowledged">1<' in html
    assert f'data-alert="{notification.pk}"' in html and "Cost above $1" in html
    assert "$2.5 / $0 / $-2.5" in html
    answer = web.post(f"/dashboard/alerts/{notification.pk}/acknowledge/")
    assert answer.status_code == 302
    html = web.get("/dashboard/alerts/").content.decode()
    assert f'data-alert="{notification.pk}"' not in html
    assert 'aria-label="0 unacknowledged">0<' in html
    assert (
        f'data-alert="{notification.pk}"' in web.get("/dashboard/alerts/?show=all").content.decode()
    )
    assert (
        f'data-alert="{notification.pk}"'
        not in web.get("/dashboard/alerts/?show=all&severity=info").content.decode()
    )


def test_a_viewer_reads_but_cannot_acknowledge_and_outsiders_see_nothing(tenant, outsider):
    notification = fired(tenant.test)
    viewer = web_as(tenant.add_member(Role.VIEWER))
    assert f'data-alert="{notification.pk}"' in viewer.get("/dashboard/alerts/").content.decode()
    assert viewer.post(f"/dashboard/alerts/{notification.pk}/acknowledge/").status_code == 403
    stranger = web_as(outsider.owner)
    assert (
        f'data-alert="{notification.pk}"' not in stranger.get("/dashboard/alerts/").content.decode()
    )
    assert stranger.post(f"/dashboard/alerts/{notification.pk}/acknowledge/").status_code == 404
    notification.refresh_from_db()
    assert notification.acknowledged_at is None
