"""The periodic credit tasks: scheduled, idempotent, and run by a real worker."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from apps.credits import tasks
from apps.credits.models import CreditPool, CreditTransaction
from tests.credits.conftest import assert_ledger_consistent, grant, lapse, make_pool

D = Decimal


def test_both_tasks_are_on_the_beat_schedule():
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "apps.credits.tasks.expire_credit_grants" in scheduled
    assert "apps.credits.tasks.roll_over_credit_pools" in scheduled


@pytest.mark.django_db
def test_expiry_task_is_idempotent(tenant, outsider):
    pools = [make_pool(tenant.test, "cus_a"), make_pool(outsider.test, "cus_b")]
    lapsing = [
        grant(pool, "10", expires_at=timezone.now() + dt.timedelta(days=1)) for pool in pools
    ]
    keep = grant(pools[0], "3", expires_at=timezone.now() + dt.timedelta(days=1))
    for g in lapsing:
        lapse(g)
    assert tasks.expire_credit_grants() == {"pools": 2, "entries": 2}
    assert tasks.expire_credit_grants() == {"pools": 0, "entries": 0}
    for pool in pools:
        assert_ledger_consistent(pool)
    pools[0].refresh_from_db()
    assert (pools[0].balance, pools[0].total_expired) == (3, 10)
    keep.refresh_from_db()
    assert keep.remaining == 3
    assert CreditTransaction.objects.filter(transaction_type="expiration").count() == 2


@pytest.mark.django_db
def test_rollover_task_is_idempotent(tenant):
    pool = make_pool(tenant.test, rollover_policy="capped", rollover_cap=D(4))
    grant(pool, "10", "plan", source_ref="p1", granted_at=timezone.now() - dt.timedelta(days=30))
    end = timezone.now() - dt.timedelta(seconds=1)
    CreditPool.objects.filter(pk=pool.pk).update(current_period_end=end)
    assert tasks.roll_over_credit_pools() == {"pools": 1, "entries": 3}
    assert tasks.roll_over_credit_pools() == {"pools": 0, "entries": 0}
    pool.refresh_from_db()
    assert (pool.balance, pool.rolled_over_through) == (4, end)
    assert_ledger_consistent(pool)


@pytest.mark.celery
def test_the_worker_runs_them(celery_worker):
    from tests.conftest import make_tenant

    tenant = make_tenant("Acme")
    pool = make_pool(tenant.test)
    lapse(grant(pool, "5", expires_at=timezone.now() + dt.timedelta(days=1)))
    # No result backend: watch the ledger instead.
    tasks.expire_credit_grants.delay()
    tasks.roll_over_credit_pools.delay()
    deadline = time.monotonic() + 30
    while not CreditTransaction.objects.filter(pool=pool, transaction_type="expiration").exists():
        assert time.monotonic() < deadline, "the worker did not expire the grant"
        time.sleep(0.1)
    pool.refresh_from_db()
    assert pool.balance == 0
    assert_ledger_consistent(pool)
