"""Concurrent deductions on real connections (transaction=True): the pool's row lock
serializes them, so a hard-limit pool is never overdrawn and no credit is lost."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from apps.credits.models import CreditTransaction
from apps.credits.services import credits_deduct_for_usage
from tests.credits.conftest import assert_ledger_consistent, grant, make_feature, make_pool

pytestmark = pytest.mark.django_db(transaction=True)
D = Decimal
THREADS = 8
EACH = 5
CREDITS = D(7)


def hammer(pool, feature) -> list[BaseException]:
    """THREADS threads, each charging EACH events of CREDITS credits, all starting at once."""
    barrier = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            for _ in range(EACH):
                # As ingestion does: the event and its deduction in one transaction.
                with transaction.atomic():
                    credits_deduct_for_usage(
                        environment=pool.environment,
                        customer_id=pool.customer_id,
                        feature_id=feature.pk,
                        model="",
                        units=CREDITS,
                        occurred_at=timezone.now(),
                        event_ref=uuid.uuid4().hex,
                        denomination=pool.denomination,
                    )
        except BaseException as exc:  # reported to the main thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return failures


def test_hard_limit_is_never_overdrawn(tenant):
    pool = make_pool(tenant.test, hard_limit=True)
    grant(pool, "100")
    grant(pool, "0.5", "promotional")
    assert hammer(pool, make_feature(tenant.test)) == []
    requested = CREDITS * THREADS * EACH
    deductions = CreditTransaction.objects.filter(pool=pool, transaction_type="deduction")
    totals = deductions.aggregate(taken=Sum("amount"), short=Sum("shortfall"))
    assert deductions.count() == THREADS * EACH
    assert -totals["taken"] == D("100.5")  # everything granted, not a credit more
    assert totals["short"] == requested - D("100.5")
    pool.refresh_from_db()
    assert pool.balance == 0
    assert_ledger_consistent(pool)


def test_soft_limit_goes_negative_by_exactly_the_overuse(tenant):
    pool = make_pool(tenant.test, hard_limit=False)
    grant(pool, "100")
    assert hammer(pool, make_feature(tenant.test)) == []
    pool.refresh_from_db()
    assert pool.balance == D(100) - CREDITS * THREADS * EACH
    assert_ledger_consistent(pool)
