"""The reservation cleanup task: on the beat schedule, and it marks expired holds."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from django.conf import settings
from django.utils import timezone

from apps.entitlements.models import Reservation
from apps.entitlements.tasks import expire_reservations
from tests.factories import make_customer

pytestmark = pytest.mark.django_db


def test_the_task_is_on_the_beat_schedule():
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "apps.entitlements.tasks.expire_reservations" in tasks


def test_it_marks_only_past_holds(tenant):
    from apps.features.models import Feature

    customer = make_customer(tenant.test, "cus_1")
    feature = Feature.objects.create(environment=tenant.test, key="tokens")
    now = timezone.now()

    def hold(expires_at, status="held"):
        return Reservation.objects.create(
            environment=tenant.test,
            customer=customer,
            feature=feature,
            units=D(1),
            status=status,
            expires_at=expires_at,
        )

    past, future = hold(now - dt.timedelta(seconds=5)), hold(now + dt.timedelta(minutes=5))
    settled = hold(now - dt.timedelta(seconds=5), status="settled")
    assert expire_reservations() == 1
    assert expire_reservations() == 0  # idempotent
    statuses = {r.pk: r.status for r in Reservation.objects.all()}
    assert statuses == {past.pk: "expired", future.pk: "held", settled.pk: "settled"}
