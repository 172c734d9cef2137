"""Usage caps at ingestion for every reset interval, across each window's boundary
(explicit occurredAt), and what a check reports now."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.core.months import add_months
from apps.core.redis import get_redis
from apps.subscriptions.periods import day_start

from .conftest import iso, rule

pytestmark = pytest.mark.django_db

HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)


def boundary(reset: str, started_at: dt.datetime, now: dt.datetime) -> dt.datetime:
    """A window boundary of ``reset`` in the past, after the subscription started."""
    today = day_start(now)
    if reset == "day":
        return today - dt.timedelta(days=1)
    if reset == "week":
        return today - dt.timedelta(days=today.weekday() + 7)  # a Monday, 00:00 UTC
    if reset == "month":
        return add_months(today.replace(day=1), -1)
    return add_months(started_at, 1)  # billing_period (and never: no reset there)


@pytest.mark.parametrize("reset", ["day", "week", "month", "billing_period"])
def test_cap_resets_at_its_boundary(platform, reset):
    plan = platform.plan("pro", {"tokens": rule(price="1", cap="10", reset=reset)})
    subscription = platform.subscribe(plan, days_ago=70)
    now = timezone.now()
    edge = boundary(reset, subscription.started_at, now)
    assert subscription.started_at < edge - HOUR and edge + HOUR < now

    before = platform.event(units=8, occurredAt=iso(edge - HOUR)).json()
    assert "usageLimitExceeded" not in before and before["revenueAmount"] == "8"
    over = platform.event(units=4, occurredAt=iso(edge - MINUTE)).json()
    assert over["usageLimitExceeded"] is True and over["overageUnits"] == "2"
    assert over["revenueAmount"] == "2"  # hard cap: the 2 units beyond it are not billed
    after = platform.event(units=5, occurredAt=iso(edge)).json()  # the boundary opens a window
    assert "usageLimitExceeded" not in after and after["revenueAmount"] == "5"
    later = platform.event(units=6, occurredAt=iso(edge + HOUR)).json()
    assert later["usageLimitExceeded"] is True and later["overageUnits"] == "1"


def test_never_resets(platform):
    plan = platform.plan("pro", {"tokens": rule(price="1", cap="10", reset="never")})
    subscription = platform.subscribe(plan, days_ago=70)
    edge = add_months(subscription.started_at, 1)
    platform.event(units=8, occurredAt=iso(edge - HOUR))
    over = platform.event(units=4, occurredAt=iso(edge + HOUR)).json()
    assert over["usageLimitExceeded"] is True and over["overageUnits"] == "2"
    body = platform.check()
    assert (body["allowed"], body["reason"]["code"]) == (False, "limit_reached")
    assert body["usage"]["used"] == "12" and body["usage"]["resetsAt"] is None
    assert dt.datetime.fromisoformat(body["usage"]["windowStart"]) == subscription.started_at


def test_events_before_the_subscription_started_are_not_priced(platform):
    plan = platform.plan("pro", {"tokens": rule(price="1", cap="10")})
    subscription = platform.subscribe(plan, days_ago=3)
    early = platform.event(units=50, occurredAt=iso(subscription.started_at - HOUR)).json()
    assert early["revenueAmount"] is None and "usageLimitExceeded" not in early
    assert platform.check()["usage"]["used"] == "0"


@pytest.mark.parametrize("reset", ["day", "week", "month", "billing_period", "never"])
def test_check_reports_the_current_window(platform, reset):
    plan = platform.plan("pro", {"tokens": rule(price="1", cap="10", reset=reset)})
    platform.subscribe(plan, days_ago=40)
    now = timezone.now()
    platform.event(units=3, occurredAt=iso(now - MINUTE))
    platform.event(units=100, occurredAt=iso(now - dt.timedelta(days=35)))  # an older window
    body = platform.check()
    usage = body["usage"]
    if reset == "never":
        # Both events are after the subscription started: never resets.
        assert usage["used"] == "103" and usage["resetsAt"] is None
        assert body["allowed"] is False
    else:
        assert usage["used"] == "3" and body["allowed"] is True
        assert usage["resetInterval"] == reset
        assert dt.datetime.fromisoformat(usage["resetsAt"]) > now
    get_redis().flushdb()
    assert platform.check()["usage"] == usage  # rebuilt from the ledger: the same answer
