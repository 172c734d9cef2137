"""The nightly recompute: scheduled, and one run per environment through a real worker."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from apps.core.tenancy import scoped
from apps.recommendations.models import ComputeRun
from apps.recommendations.tasks import compute_all_recommendations
from tanso.celery import app

from .conftest import findings, spend


def test_the_nightly_recompute_is_scheduled():
    entry = settings.CELERY_BEAT_SCHEDULE["compute-recommendations"]
    assert entry["task"] == "apps.recommendations.tasks.compute_all_recommendations"
    assert entry["task"] in app.tasks


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_every_environment_gets_a_run(tenant, outsider, catalog, celery_worker):
    spend(tenant.api(), "cus_low", "chat", cost="90", revenue="100")
    queued = compute_all_recommendations()
    assert queued >= 4  # two environments of each organization
    deadline = time.monotonic() + 60
    pending = ComputeRun.objects.exclude(status__in=["succeeded", "failed"])
    while time.monotonic() < deadline and (ComputeRun.objects.count() < queued or pending.exists()):
        time.sleep(0.2)
    run = scoped(ComputeRun, tenant.test).get()
    assert (run.status, run.requested_by, run.findings) == ("succeeded", "schedule", 2)
    assert "customer:cus_low" in findings(tenant.test)
    assert findings(outsider.test) == {}
