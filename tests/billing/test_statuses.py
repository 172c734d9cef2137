"""Invoice statuses: pending until the due date (payment terms), due, past due after the
grace period (which makes the subscription past due), paid (which restores it), void.
Time is frozen by passing ``now`` to the services."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.billing.models import Invoice
from apps.billing.services import (
    billing_close_periods,
    billing_settings_update,
    billing_update_statuses,
    invoice_mark_paid,
    invoice_void,
)
from apps.plans.models import Plan
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_cancel
from tests.billing.helpers import SYSTEM, plan, subscribe, utc

ADVANCE = Plan.BillingTiming.IN_ADVANCE
ISSUED = utc(2026, 3, 1, 10)


def status_of(invoice: Invoice) -> str:
    invoice.refresh_from_db()
    return invoice.status


def sub_status(subscription: Subscription) -> str:
    subscription.refresh_from_db()
    return subscription.status


@pytest.fixture
def invoiced(tenant):
    """An in-advance $49 subscription whose first invoice is issued on March 1st 10:00."""
    subscription = subscribe(tenant.test, plan(tenant.test, price="49", timing=ADVANCE), at=ISSUED)
    billing_close_periods(now=ISSUED)
    return subscription, Invoice.objects.get(subscription=subscription)


@pytest.mark.django_db
class TestLifecycle:
    def test_due_at_issue_then_past_due_after_three_days(self, invoiced):
        subscription, invoice = invoiced
        assert (invoice.status, invoice.due_at, invoice.grace_period_days) == ("due", ISSUED, 3)
        billing_update_statuses(now=ISSUED + dt.timedelta(days=3) - dt.timedelta(seconds=1))
        assert status_of(invoice) == "due"
        assert sub_status(subscription) == "active"
        result = billing_update_statuses(now=ISSUED + dt.timedelta(days=3))
        assert (result.past_due, result.subscriptions_past_due) == (1, 1)
        assert status_of(invoice) == "past_due"
        assert invoice.past_due_at == ISSUED + dt.timedelta(days=3)
        assert sub_status(subscription) == "past_due"
        # Again: nothing more happens.
        again = billing_update_statuses(now=ISSUED + dt.timedelta(days=4))
        assert (again.past_due, again.subscriptions_past_due) == (0, 0)

    def test_payment_terms_keep_it_pending_until_due(self, tenant):
        billing_settings_update(environment=tenant.test, payment_terms_days=10)
        subscription = subscribe(
            tenant.test, plan(tenant.test, price="49", timing=ADVANCE), at=ISSUED
        )
        billing_close_periods(now=ISSUED)
        invoice = Invoice.objects.get(subscription=subscription)
        assert invoice.status == "pending"
        assert invoice.due_at == ISSUED + dt.timedelta(days=10)
        billing_update_statuses(now=ISSUED + dt.timedelta(days=9))
        assert status_of(invoice) == "pending"
        billing_update_statuses(now=ISSUED + dt.timedelta(days=10))
        assert status_of(invoice) == "due"
        billing_update_statuses(now=ISSUED + dt.timedelta(days=13))
        assert status_of(invoice) == "past_due"

    def test_grace_of_the_subscription_and_of_the_environment(self, tenant):
        patient = subscribe(
            tenant.test,
            plan(tenant.test, price="5", timing=ADVANCE),
            at=ISSUED,
            grace_period_days=7,
        )
        billing_close_periods(now=ISSUED)
        invoice = Invoice.objects.get(subscription=patient)
        assert invoice.grace_period_days == 7
        billing_update_statuses(now=ISSUED + dt.timedelta(days=6))
        assert status_of(invoice) == "due"
        billing_update_statuses(now=ISSUED + dt.timedelta(days=7))
        assert status_of(invoice) == "past_due"

        billing_settings_update(environment=tenant.test, grace_period_days=0)
        strict = subscribe(
            tenant.test,
            plan(tenant.test, "other", price="5", timing=ADVANCE),
            at=ISSUED,
            reference="cus_2",
        )
        billing_close_periods(now=ISSUED)
        invoice = Invoice.objects.get(subscription=strict)
        assert invoice.grace_period_days == 0
        billing_update_statuses(now=ISSUED)
        assert status_of(invoice) == "past_due"

    def test_paying_restores_the_subscription(self, invoiced):
        subscription, invoice = invoiced
        billing_update_statuses(now=ISSUED + dt.timedelta(days=5))
        assert sub_status(subscription) == "past_due"
        invoice_mark_paid(invoice=invoice, now=ISSUED + dt.timedelta(days=6), actor=SYSTEM)
        assert status_of(invoice) == "paid"
        assert invoice.paid_at == ISSUED + dt.timedelta(days=6)
        assert sub_status(subscription) == "active"

    def test_still_past_due_while_another_invoice_is(self, tenant, invoiced):
        subscription, first = invoiced
        billing_close_periods(now=utc(2026, 4, 1, 10))
        second = Invoice.objects.filter(subscription=subscription).order_by("sequence").last()
        billing_update_statuses(now=utc(2026, 4, 10))
        assert (status_of(first), status_of(second)) == ("past_due", "past_due")
        invoice_mark_paid(invoice=first, now=utc(2026, 4, 10), actor=SYSTEM)
        assert sub_status(subscription) == "past_due"
        invoice_void(invoice=second, now=utc(2026, 4, 11), actor=SYSTEM)
        assert status_of(second) == "void"
        assert sub_status(subscription) == "active"

    def test_cancelled_subscription_with_an_unpaid_invoice(self, invoiced):
        subscription, invoice = invoiced
        subscription_cancel(
            subscription=subscription,
            mode="immediate",
            now=ISSUED + dt.timedelta(hours=1),
            actor=SYSTEM,
        )
        result = billing_update_statuses(now=ISSUED + dt.timedelta(days=5))
        assert status_of(invoice) == "past_due"
        assert result.subscriptions_past_due == 0
        assert sub_status(subscription) == "cancelled"

    def test_nothing_to_pay_is_paid_at_once(self, tenant):
        subscription = subscribe(
            tenant.test, plan(tenant.test, price="0", timing=ADVANCE), at=ISSUED
        )
        billing_close_periods(now=ISSUED)
        invoice = Invoice.objects.get(subscription=subscription)
        assert (invoice.status, invoice.total_minor, invoice.paid_at) == ("paid", 0, ISSUED)
