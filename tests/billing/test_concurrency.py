"""Concurrency, on real transactions: numbers stay gapless and unique when several
runners issue invoices at once (and when a transaction rolls back), and concurrent runs
of the cycle bill each period once."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection, transaction

from apps.billing.models import Invoice
from apps.billing.services import _allocate_numbers, billing_close_periods
from apps.plans.models import Plan
from tests.billing.helpers import plan, subscribe, utc

pytestmark = pytest.mark.django_db(transaction=True)


def in_threads(count: int, work: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(index: int) -> None:
        try:
            start.wait()
            work(index)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_concurrent_cycles_bill_each_period_once_with_gapless_numbers(tenant):
    the_plan = plan(tenant.test, price="10", timing=Plan.BillingTiming.IN_ADVANCE)
    subscriptions = [
        subscribe(tenant.test, the_plan, at=utc(2026, 3, 1, 9), reference=f"cus_{n}")
        for n in range(12)
    ]
    now = utc(2026, 4, 1, 0, 5)  # each: March's initial invoice and April's
    errors = in_threads(4, lambda _: billing_close_periods(now=now, batch_size=2))
    assert errors == []
    invoices = list(Invoice.objects.filter(environment=tenant.test).order_by("sequence"))
    assert len(invoices) == 24
    assert [i.sequence for i in invoices] == list(range(1, 25))
    assert len({i.number for i in invoices}) == 24
    for subscription in subscriptions:
        periods = Invoice.objects.filter(subscription=subscription).values_list(
            "period_start", flat=True
        )
        assert sorted(periods) == [utc(2026, 3, 1), utc(2026, 4, 1)]


def test_the_same_run_twice_at_once_creates_one_invoice_per_period(tenant):
    the_plan = plan(tenant.test, price="10", timing=Plan.BillingTiming.IN_ADVANCE)
    subscription = subscribe(tenant.test, the_plan, at=utc(2026, 3, 1, 9))
    errors = in_threads(3, lambda _: billing_close_periods(now=utc(2026, 3, 1, 10)))
    assert errors == []
    assert Invoice.objects.filter(subscription=subscription).count() == 1


class Rollback(Exception):
    pass


def test_numbers_of_rolled_back_transactions_are_reused(tenant):
    committed: list[int] = []
    lock = threading.Lock()

    def issue(index: int) -> None:
        for attempt in range(5):
            try:
                with transaction.atomic():
                    (number,) = _allocate_numbers(tenant.test.pk, 1)
                    if (index + attempt) % 2:
                        raise Rollback
                    with lock:
                        committed.append(number)
            except Rollback:
                pass

    assert in_threads(6, issue) == []
    # 15 of the 30 attempts committed: they hold exactly 1..15.
    assert sorted(committed) == list(range(1, 16))
    with transaction.atomic():
        assert list(_allocate_numbers(tenant.test.pk, 2)) == [16, 17]


def test_environments_number_separately(tenant):
    with transaction.atomic():
        assert list(_allocate_numbers(tenant.test.pk, 3)) == [1, 2, 3]
        assert list(_allocate_numbers(tenant.live.pk, 1)) == [1]
        assert list(_allocate_numbers(tenant.test.pk, 1)) == [4]
    with pytest.raises(RuntimeError):
        _allocate_numbers(tenant.test.pk, 1)  # only inside the inserting transaction
