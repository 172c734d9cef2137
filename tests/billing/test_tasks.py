"""The billing cycle as Celery runs it: on the beat schedule, idempotent, and through a
real worker (the task takes no arguments and returns counts)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.conf import settings
from django.utils import timezone

from apps.billing.models import Invoice
from apps.billing.tasks import run_billing_cycle, update_invoice_statuses
from apps.plans.models import Plan
from apps.subscriptions.models import Subscription
from tests.billing.helpers import plan, subscribe


def test_the_cycle_is_on_the_beat_schedule():
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "apps.billing.tasks.run_billing_cycle" in tasks


@pytest.mark.django_db
def test_the_cycle_bills_up_to_now_once(tenant):
    started = timezone.now() - dt.timedelta(days=75)
    subscription = subscribe(
        tenant.test, plan(tenant.test, price="10", timing=Plan.BillingTiming.IN_ADVANCE), at=started
    )
    first = run_billing_cycle.apply().get()
    # 75 days: three periods started (the first and two renewals), each invoiced.
    assert first["closed"]["invoices"] == 3
    assert first["advanced"]["advanced"] == 2
    # A late run issues them now: due now, past due only after the grace period.
    assert first["statuses"]["past_due"] == 0
    again = run_billing_cycle.apply().get()
    assert again["closed"]["invoices"] == 0
    assert again["statuses"] == update_invoice_statuses.apply().get()
    assert Invoice.objects.filter(subscription=subscription).count() == 3
    assert Subscription.objects.get(pk=subscription.pk).status == "active"


@pytest.mark.django_db
def test_the_cycle_runs_as_of_a_given_instant(tenant):
    """``now`` (ISO 8601, as a Celery argument) runs every step as of that instant: the
    periods up to it are invoiced, the later ones not yet, and statuses move at it."""
    subscription = subscribe(
        tenant.test,
        plan(tenant.test, price="10", timing=Plan.BillingTiming.IN_ADVANCE),
        at=dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC),
    )
    result = run_billing_cycle.apply(kwargs={"now": "2026-04-01T00:05:00+00:00"}).get()
    assert result["closed"]["invoices"] == 2  # March (initial) and April, not May
    assert result["advanced"]["advanced"] == 1
    statuses = run_billing_cycle.apply(kwargs={"now": "2026-04-04T00:05:00+00:00"}).get()
    assert statuses["statuses"]["past_due"] == 2
    assert Subscription.objects.get(pk=subscription.pk).status == "past_due"
    with pytest.raises(ValueError, match="UTC offset"):
        run_billing_cycle.apply(kwargs={"now": "2026-04-04T00:05:00"}).get()


def test_through_a_real_worker(tenant, celery_worker):
    subscription = subscribe(
        tenant.test,
        plan(tenant.test, price="10", timing=Plan.BillingTiming.IN_ADVANCE),
        at=timezone.now(),
    )
    run_billing_cycle.delay()  # no result backend: watch the invoices instead
    deadline = time.monotonic() + 30
    while not Invoice.objects.filter(subscription=subscription).exists():
        assert time.monotonic() < deadline, "the worker did not bill the subscription"
        time.sleep(0.1)
    invoice = Invoice.objects.get(subscription=subscription)
    assert (invoice.type, invoice.total_minor) == ("in_advance_initial", 1000)
