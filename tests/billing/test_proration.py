"""Plan changes in the middle of a paid period: an upgrade of an in-advance plan charges
the difference for the remaining share of the period (exact, each line rounded once); a
cheaper immediate switch gives a credit note; downgrades wait for the period end."""

from __future__ import annotations

from decimal import Context, localcontext
from decimal import Decimal as D

import pytest

from apps.billing.models import Invoice
from apps.billing.services import billing_close_periods, billing_prorate_changes
from apps.plans.models import Plan
from apps.subscriptions.services import subscription_cancel, subscription_change_plan
from tests.billing.helpers import SYSTEM, invoices_of, lines, plan, subscribe, utc

ADVANCE = Plan.BillingTiming.IN_ADVANCE
MARCH = utc(2026, 3, 1, 9)
UPGRADE_AT = utc(2026, 3, 11)  # 21 of March's 31 days remain


@pytest.fixture
def basic_and_pro(tenant):
    basic = plan(tenant.test, "basic", price="30", timing=ADVANCE)
    pro = plan(tenant.test, "pro", price="90", timing=ADVANCE)
    subscription = subscribe(tenant.test, basic, at=MARCH)
    billing_close_periods(now=utc(2026, 3, 1, 10))
    return subscription, basic, pro


@pytest.mark.django_db
class TestUpgrade:
    def test_upgrade_charges_the_prorated_difference(self, basic_and_pro):
        subscription, _basic, pro = basic_and_pro
        change = subscription_change_plan(
            subscription=subscription, plan=pro, now=UPGRADE_AT, actor=SYSTEM
        )
        assert billing_prorate_changes(now=UPGRADE_AT) == 1
        adjustment = Invoice.objects.get(plan_change=change)
        assert adjustment.type == Invoice.Type.ADJUSTMENT
        assert adjustment.reason == Invoice.Reason.PLAN_CHANGE
        assert (adjustment.period_start, adjustment.period_end) == (UPGRADE_AT, utc(2026, 4, 1))
        credit, charge = adjustment.lines.order_by("position")
        # 30 x 21/31 = 20.3225806451... -> 20.32; 90 x 21/31 = 60.9677419354... -> 60.97.
        assert str(credit.amount_exact).startswith("-20.322580645161290322580645")
        assert credit.amount_minor == -2032
        assert str(charge.amount_exact).startswith("60.967741935483870967741935")
        assert charge.amount_minor == 6097
        assert adjustment.total_minor == 4065  # the rounded lines, added
        assert adjustment.status == Invoice.Status.DUE
        assert "Credit from old plan: Basic" in credit.description

    def test_prorated_once(self, basic_and_pro):
        subscription, _basic, pro = basic_and_pro
        subscription_change_plan(subscription=subscription, plan=pro, now=UPGRADE_AT, actor=SYSTEM)
        assert billing_prorate_changes(now=UPGRADE_AT) == 1
        assert billing_prorate_changes(now=UPGRADE_AT) == 0
        assert Invoice.objects.filter(type=Invoice.Type.ADJUSTMENT).count() == 1

    def test_the_next_period_is_billed_at_the_new_plan(self, basic_and_pro):
        subscription, _basic, pro = basic_and_pro
        subscription_change_plan(subscription=subscription, plan=pro, now=UPGRADE_AT, actor=SYSTEM)
        billing_prorate_changes(now=UPGRADE_AT)
        billing_close_periods(now=utc(2026, 4, 1, 0, 5))
        april = invoices_of(subscription)[-1]
        assert april.period_start == utc(2026, 4, 1)
        assert lines(april) == [("base", 9000)]

    def test_cancel_after_an_upgrade_credits_at_the_new_price(self, basic_and_pro):
        subscription, _basic, pro = basic_and_pro
        subscription_change_plan(subscription=subscription, plan=pro, now=UPGRADE_AT, actor=SYSTEM)
        billing_prorate_changes(now=UPGRADE_AT)
        subscription_cancel(
            subscription=subscription, mode="immediate", now=utc(2026, 3, 21), actor=SYSTEM
        )
        billing_close_periods(now=utc(2026, 3, 21, 1))
        note = Invoice.objects.get(reason=Invoice.Reason.CANCELLATION)
        # 11 of 31 days unused at $90: 31.9354838... -> 31.94 back.
        assert lines(note) == [("cancellation", -3194)]

    def test_cheaper_immediate_switch_is_a_credit_note(self, basic_and_pro):
        subscription, _basic, _pro = basic_and_pro
        cheap = plan(subscription.environment, "cheap", price="10", timing=ADVANCE)
        subscription_change_plan(
            subscription=subscription, plan=cheap, timing="now", now=UPGRADE_AT, actor=SYSTEM
        )
        billing_prorate_changes(now=UPGRADE_AT)
        note = Invoice.objects.get(plan_change__isnull=False)
        # -30 x 21/31 + 10 x 21/31 = -20.32 + 6.77
        assert lines(note) == [("proration", -2032), ("proration", 677)]
        assert (note.type, note.status, note.total_minor) == ("credit", "paid", -1355)

    def test_switch_to_an_annual_plan_credits_the_month_and_starts_a_year(
        self, tenant, basic_and_pro
    ):
        subscription, _basic, _pro = basic_and_pro
        annual = plan(tenant.test, "annual", price="600", timing=ADVANCE, interval_months=12)
        subscription_change_plan(
            subscription=subscription, plan=annual, now=UPGRADE_AT, actor=SYSTEM
        )
        billing_prorate_changes(now=UPGRADE_AT)
        billing_close_periods(now=utc(2026, 3, 11, 1))
        _initial, note, year = invoices_of(subscription)
        assert lines(note) == [("cancellation", -2032)]
        assert note.type == Invoice.Type.CREDIT
        assert (year.period_start, year.period_end) == (utc(2026, 3, 11), utc(2027, 3, 11))
        assert lines(year) == [("base", 60000)]

    def test_downgrade_waits_for_the_period_end(self, basic_and_pro):
        subscription, _basic, _pro = basic_and_pro
        cheap = plan(subscription.environment, "cheap", price="10", timing=ADVANCE)
        subscription_change_plan(
            subscription=subscription, plan=cheap, now=UPGRADE_AT, actor=SYSTEM
        )
        assert billing_prorate_changes(now=UPGRADE_AT) == 0
        billing_close_periods(now=utc(2026, 4, 1, 0, 5))
        assert lines(invoices_of(subscription)[-1]) == [("base", 1000)]

    def test_upgrade_in_the_trial_is_not_prorated(self, tenant):
        basic = plan(tenant.test, "basic", price="30", timing=ADVANCE)
        pro = plan(tenant.test, "pro", price="90", timing=ADVANCE)
        subscription = subscribe(tenant.test, basic, at=MARCH, trial_days=14)
        subscription_change_plan(subscription=subscription, plan=pro, now=UPGRADE_AT, actor=SYSTEM)
        assert billing_prorate_changes(now=UPGRADE_AT) == 0
        billing_close_periods(now=utc(2026, 3, 15, 1))
        assert lines(invoices_of(subscription)[0]) == [("base", 9000)]

    def test_in_arrears_upgrade_has_no_adjustment_invoice(self, tenant):
        small = plan(tenant.test, "small", price="31")
        large = plan(tenant.test, "large", price="62")
        subscription = subscribe(tenant.test, small, at=MARCH)
        subscription_change_plan(
            subscription=subscription, plan=large, now=UPGRADE_AT, actor=SYSTEM
        )
        assert billing_prorate_changes(now=UPGRADE_AT) == 0
        assert not Invoice.objects.exists()


@pytest.mark.django_db
def test_proration_amount_is_exact_for_a_change_at_any_instant(tenant):
    basic = plan(tenant.test, "basic", price="30", timing=ADVANCE)
    pro = plan(tenant.test, "pro", price="90", timing=ADVANCE)
    subscription = subscribe(tenant.test, basic, at=MARCH)
    at = utc(2026, 3, 11, 12)  # 20.5 days of 31 remain
    subscription_change_plan(subscription=subscription, plan=pro, now=at, actor=SYSTEM)
    billing_prorate_changes(now=at)
    credit, charge = Invoice.objects.get(type="adjustment").lines.order_by("position")
    remaining, length = D(41 * 43200), D(31 * 86400)
    with localcontext(Context(prec=60)):
        assert credit.amount_exact == (-D(30) * remaining / length).quantize(D(10) ** -30)
    assert (credit.amount_minor, charge.amount_minor) == (-1984, 5952)
