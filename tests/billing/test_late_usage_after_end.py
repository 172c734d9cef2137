"""Late usage of an ended subscription: usage arriving after its last invoice has no next
invoice to land on, so the cycle bills it on a late-usage invoice of its own (type
adjustment, reason ``late_usage``, dated the UTC day it is issued), once; each ended
subscription is looked at once per UTC day while within the late-usage window."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext, override_settings

from apps.billing.models import Invoice, StripeMode, SubscriptionBilling
from apps.billing.services import (
    billing_close_periods,
    billing_invoice_late_usage,
    billing_settings_update,
)
from apps.plans.models import Plan
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_cancel
from tests.billing.helpers import (
    SYSTEM,
    invoices_of,
    lines,
    per_unit,
    plan,
    subscribe,
    usage,
    utc,
)
from tests.billing.test_concurrency import in_threads

ADVANCE = Plan.BillingTiming.IN_ADVANCE
MARCH = utc(2026, 3, 1, 9)
ENDED = utc(2026, 3, 11)  # cancelled at once: the last period is Mar 1 - Mar 11


def cycle(now: dt.datetime):
    """The two steps of the billing task that matter here, as of ``now``."""
    closed = billing_close_periods(now=now)
    return closed, billing_invoice_late_usage(now=now)


def ended_in_arrears(tenant, reference: str = "cus_1", price: str = "0") -> Subscription:
    """A per-unit plan ($0.01 a token) billed in arrears, 100 tokens on Mar 5, cancelled at
    once on Mar 11 and fully invoiced (its last invoice: Mar 1 - Mar 11)."""
    the_plan = plan(
        tenant.test, f"metered-{reference}", price=price, features={"tokens": per_unit("0.01")}
    )
    sub = subscribe(tenant.test, the_plan, at=MARCH, reference=reference)
    usage(tenant.test, (utc(2026, 3, 5), 100), reference=reference)
    subscription_cancel(subscription=sub, mode="immediate", now=ENDED, actor=SYSTEM)
    cycle(utc(2026, 3, 11, 0, 5))
    (last,) = invoices_of(sub)
    assert lines(last) == [("base", 0), ("usage", 100)]  # no base fee; 100 x 0.01
    return sub


@pytest.mark.django_db
class TestLateUsageInvoice:
    def test_late_usage_is_billed_once_on_an_invoice_of_its_own(self, tenant):
        sub = ended_in_arrears(tenant)
        usage(tenant.test, (utc(2026, 3, 6, 12), 50), (utc(2026, 3, 10, 23), 25))

        _, late = cycle(utc(2026, 3, 12, 0, 5))
        assert (late.subscriptions, late.invoices, late.late_usage_lines) == (1, 1, 1)
        _last, extra = invoices_of(sub)
        assert (extra.type, extra.reason, extra.number) == (
            "adjustment",
            "late_usage",
            "INV-TEST-000002",
        )
        assert (extra.period_start, extra.period_end) == (utc(2026, 3, 12), utc(2026, 3, 12))
        assert extra.status == Invoice.Status.DUE
        # 75 late tokens x 0.01 = 0.75
        assert lines(extra) == [("late_usage", 75)]
        assert extra.total_minor == 75
        (line,) = extra.lines.all()
        assert (line.service_start, line.service_end) == (utc(2026, 3, 1), ENDED)
        assert line.description == (
            "Adjustment for late usage: tokens, Mar 1, 2026 \u2013 Mar 11, 2026: "
            "+75 units (billed 100, now 175)"
        )

        # Again the same day, the next day, a week later: nothing more.
        for later in (utc(2026, 3, 12, 0, 10), utc(2026, 3, 13, 0, 5), utc(2026, 3, 20)):
            cycle(later)
        assert len(invoices_of(sub)) == 2

    def test_looked_at_once_a_day_what_arrives_after_the_look_waits_for_the_next_day(self, tenant):
        sub = ended_in_arrears(tenant)
        _, first = cycle(utc(2026, 3, 12, 0, 5))  # looked at: nothing late
        assert (first.subscriptions, first.invoices) == (1, 0)
        usage(tenant.test, (utc(2026, 3, 7), 40))
        _, same_day = cycle(utc(2026, 3, 12, 18))
        assert (same_day.subscriptions, same_day.invoices) == (0, 0)  # already looked today
        assert len(invoices_of(sub)) == 1
        _, next_day = cycle(utc(2026, 3, 13, 0, 5))
        assert next_day.invoices == 1
        # 40 x 0.01 = 0.40
        assert lines(invoices_of(sub)[-1]) == [("late_usage", 40)]

        # More the day after: a second late-usage invoice, for what is new only.
        usage(tenant.test, (utc(2026, 3, 8), 10))
        cycle(utc(2026, 3, 14, 0, 5))
        numbers = [(i.number, i.reason, i.total_minor) for i in invoices_of(sub)]
        assert numbers == [
            ("INV-TEST-000001", "period", 100),
            ("INV-TEST-000002", "late_usage", 40),
            ("INV-TEST-000003", "late_usage", 10),  # 10 x 0.01
        ]
        late = invoices_of(sub)[-1].lines.get()
        assert late.description.endswith("+10 units (billed 140, now 150)")

    def test_in_advance_plan_cancelled_at_once(self, tenant):
        """In advance: the credit note and the final usage invoice at the cancellation, then
        late usage of the cut period on an invoice of its own."""
        the_plan = plan(tenant.test, price="31", timing=ADVANCE)  # tokens at $0.002
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        cycle(utc(2026, 3, 1, 10))
        usage(tenant.test, (utc(2026, 3, 5), 500))
        subscription_cancel(subscription=sub, mode="immediate", now=ENDED, actor=SYSTEM)
        cycle(utc(2026, 3, 11, 0, 5))
        assert [i.reason for i in invoices_of(sub)] == ["period", "cancellation", "final"]

        usage(tenant.test, (utc(2026, 3, 10, 12), 1500))
        cycle(utc(2026, 3, 15))
        *_, late = invoices_of(sub)
        # 1,500 x 0.002 = 3.00; the base fee and the credit note are not touched again.
        assert (late.reason, lines(late)) == ("late_usage", [("late_usage", 300)])

    def test_usage_of_other_customers_and_environments_does_not_count(self, tenant):
        sub = ended_in_arrears(tenant)
        plan(tenant.live, "metered-live", features={"tokens": per_unit("0.01")})
        usage(tenant.test, (utc(2026, 3, 6), 50), reference="cus_2")
        usage(tenant.live, (utc(2026, 3, 6), 50))
        _, late = cycle(utc(2026, 3, 12))
        assert (late.subscriptions, late.invoices) == (1, 0)
        assert len(invoices_of(sub)) == 1

    def test_usage_after_the_end_is_not_the_subscriptions(self, tenant):
        sub = ended_in_arrears(tenant)
        usage(tenant.test, (utc(2026, 3, 11, 0, 30), 80))  # after it ended
        _, late = cycle(utc(2026, 3, 12))
        assert late.invoices == 0
        assert len(invoices_of(sub)) == 1


@pytest.mark.django_db
class TestWhichSubscriptionsAreLookedAt:
    def test_only_within_the_window_after_the_end(self, tenant):
        sub = ended_in_arrears(tenant)
        usage(tenant.test, (utc(2026, 3, 6), 50))
        with override_settings(BILLING_LATE_USAGE_WINDOW_DAYS=30):
            # Ended Mar 11: looked at until 30 days + 2 days of slack later (Apr 12).
            _, late = cycle(utc(2026, 4, 12, 0, 5))
        assert (late.subscriptions, late.invoices) == (0, 0)
        assert len(invoices_of(sub)) == 1
        with override_settings(BILLING_LATE_USAGE_WINDOW_DAYS=31):
            _, late = cycle(utc(2026, 4, 12, 0, 5))
        assert (late.subscriptions, late.invoices) == (1, 1)

    def test_the_default_window_is_ninety_days(self, tenant):
        ended_in_arrears(tenant)
        _, inside = cycle(utc(2026, 3, 11) + dt.timedelta(days=91))
        _, outside = cycle(utc(2026, 3, 11) + dt.timedelta(days=93))
        assert (inside.subscriptions, outside.subscriptions) == (1, 0)

    def test_running_subscriptions_are_not_candidates(self, tenant):
        the_plan = plan(tenant.test, features={"tokens": per_unit("0.01")})
        subscribe(tenant.test, the_plan, at=MARCH)
        _, late = cycle(utc(2026, 3, 20))
        assert late.subscriptions == 0

    def test_an_ended_subscription_not_yet_fully_invoiced_is_left_to_the_close(self, tenant):
        sub = ended_in_arrears(tenant)
        SubscriptionBilling.objects.filter(subscription=sub).update(billed_through=utc(2026, 3, 1))
        usage(tenant.test, (utc(2026, 3, 6), 50))
        late = billing_invoice_late_usage(now=utc(2026, 3, 12))
        assert late.subscriptions == 0

    def test_not_where_stripe_drives_billing(self, tenant):
        ended_in_arrears(tenant)
        billing_settings_update(environment=tenant.test, stripe_mode=StripeMode.STRIPE_DRIVEN)
        usage(tenant.test, (utc(2026, 3, 6), 50))
        _, late = cycle(utc(2026, 3, 12))
        assert (late.subscriptions, late.invoices) == (0, 0)

    def test_a_batch_costs_the_same_statements_whatever_its_size(self, tenant):
        """Set-based: the look at a batch of ended subscriptions is a fixed number of
        statements (one usage sum for all of them), not one per subscription."""
        for n in range(2):
            ended_in_arrears(tenant, reference=f"few_{n}")
        with CaptureQueriesContext(connection) as few:
            assert billing_invoice_late_usage(now=utc(2026, 3, 12)).subscriptions == 2
        for n in range(8):
            ended_in_arrears(tenant, reference=f"many_{n}")
        with CaptureQueriesContext(connection) as many:
            assert billing_invoice_late_usage(now=utc(2026, 3, 13)).subscriptions == 10
        assert len(many) == len(few)


@pytest.mark.django_db
def test_the_database_refuses_a_second_late_usage_invoice_the_same_day(tenant):
    sub = ended_in_arrears(tenant)
    usage(tenant.test, (utc(2026, 3, 6), 50))
    cycle(utc(2026, 3, 12, 0, 5))
    issued = invoices_of(sub)[-1]
    assert issued.reason == Invoice.Reason.LATE_USAGE
    with pytest.raises(IntegrityError) as caught, transaction.atomic():
        Invoice.objects.create(
            environment=tenant.test,
            number="X-1",
            sequence=999,
            subscription=sub,
            customer_id=sub.customer_id,
            type=Invoice.Type.ADJUSTMENT,
            reason=Invoice.Reason.LATE_USAGE,
            status=Invoice.Status.DUE,
            currency="USD",
            period_start=issued.period_start,
            period_end=issued.period_end,
            issued_at=issued.issued_at,
            due_at=issued.due_at,
        )
    assert "invoice_one_late_usage_per_day" in str(caught.value)


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_issue_one_late_usage_invoice(tenant):
    subs = [ended_in_arrears(tenant, reference=f"cus_{n}") for n in range(6)]
    for n in range(6):
        usage(tenant.test, (utc(2026, 3, 6), 10 * (n + 1)), reference=f"cus_{n}")
    now = utc(2026, 3, 12, 0, 5)
    errors = in_threads(4, lambda _: billing_invoice_late_usage(now=now, batch_size=2))
    assert errors == []
    for n, sub in enumerate(subs):
        late = [i for i in invoices_of(sub) if i.reason == "late_usage"]
        assert [lines(i) for i in late] == [[("late_usage", 10 * (n + 1))]]  # 10(n+1) x 0.01
    sequences = sorted(
        Invoice.objects.filter(environment=tenant.test).values_list("sequence", flat=True)
    )
    assert sequences == list(range(1, 13))  # six last invoices, six late ones: no gaps
