"""The period job as Celery runs it: scheduled, idempotent, brings periods up to now."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.utils import timezone

from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_create
from apps.subscriptions.tasks import advance_subscription_periods
from tests.factories import make_customer
from tests.plans.helpers import SYSTEM, make_plan

pytestmark = pytest.mark.django_db


def test_the_task_is_on_the_beat_schedule():
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "apps.subscriptions.tasks.advance_subscription_periods" in tasks


def test_the_task_moves_periods_to_now_once(tenant):
    started = timezone.now() - dt.timedelta(days=75)
    sub = subscription_create(
        environment=tenant.test,
        customer=make_customer(tenant.test, "cus_1"),
        plan=make_plan(tenant.test),
        now=started,
        actor=SYSTEM,
    )
    first = advance_subscription_periods.apply().get()
    assert first["advanced"] == 2  # 75 days cross two monthly boundaries, never three
    again = advance_subscription_periods.apply().get()
    assert again == {"advanced": 0, "trials_ended": 0, "changes_applied": 0, "cancelled": 0}
    sub = Subscription.objects.get(pk=sub.pk)
    assert sub.current_period_start <= timezone.now() < sub.current_period_end
