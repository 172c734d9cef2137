"""The billing cycle: hand-computed invoices for each pricing model on the period total,
base fee in advance and in arrears, caps and overage, rounding once per line, trials,
scheduled downgrades, arrears upgrades, late events, credit notes and credits."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from apps.billing.models import Invoice, InvoiceLine, SubscriptionBilling
from apps.billing.services import billing_close_periods
from apps.credits.models import CreditGrant, GrantType
from apps.credits.services import credit_model_create, plan_allocation_set
from apps.plans.models import Plan
from apps.plans.pricing import PricingModel, Rule
from apps.plans.services import RuleSpec
from apps.subscriptions.services import (
    subscription_advance_periods,
    subscription_cancel,
    subscription_change_plan,
)
from tests.billing.helpers import (
    SYSTEM,
    invoices_of,
    lines,
    per_unit,
    plan,
    subscribe,
    tiers,
    usage,
    utc,
)

ADVANCE = Plan.BillingTiming.IN_ADVANCE
MARCH = utc(2026, 3, 1, 9)  # a subscription made on March 1st: periods start on the 1st
APRIL_CLOSE = utc(2026, 4, 1, 0, 5)
MAY_CLOSE = utc(2026, 5, 1, 0, 5)


def close(now: dt.datetime) -> None:
    billing_close_periods(now=now)


def usage_line(invoice: Invoice, feature: str = "tokens") -> InvoiceLine:
    return invoice.lines.get(kind="usage", feature__key=feature)


def march_invoice_for(tenant, rule: RuleSpec, units: list[int], reference: str) -> Invoice:
    """An in-arrears plan without base fee, ``units`` used in March in separate events."""
    the_plan = plan(tenant.test, f"p-{reference}", features={"tokens": rule})
    sub = subscribe(tenant.test, the_plan, at=MARCH, reference=reference)
    usage(
        tenant.test,
        *[(utc(2026, 3, 2 + i, 12), n) for i, n in enumerate(units)],
        reference=reference,
    )
    close(APRIL_CLOSE)
    (invoice,) = invoices_of(sub)
    return invoice


@pytest.mark.django_db
class TestPricingOnThePeriodTotal:
    def test_per_unit(self, tenant):
        invoice = march_invoice_for(tenant, per_unit("0.002"), [1000, 500], "a")
        line = usage_line(invoice)
        assert (line.quantity, line.amount_exact, line.amount_minor) == (D(1500), D(3), 300)
        assert invoice.total_minor == 300

    GRADUATED = RuleSpec(
        rule=Rule(
            model=PricingModel.GRADUATED,
            tiers=tiers(("1000", "0"), ("10000", "0.002", "5"), (None, "0.001")),
        )
    )

    @pytest.mark.parametrize(
        ("units", "exact", "minor"),
        [
            # Exactly at the first tier's upTo: still free, the second tier's fee not due.
            ([400, 600], D("0"), 0),
            # One unit into the second tier: its fee and one unit at 0.002.
            ([1000, 1], D("5.002"), 500),
            # 1,000 free + 9,000 x 0.002 + $5 + 2,000 x 0.001 = 25.
            ([5000, 5000, 2000], D("25"), 2500),
        ],
    )
    def test_graduated_tiers_fill_on_the_total(self, tenant, units, exact, minor):
        invoice = march_invoice_for(tenant, self.GRADUATED, units, "g")
        line = usage_line(invoice)
        assert (line.amount_exact, line.amount_minor) == (exact, minor)

    VOLUME = RuleSpec(
        rule=Rule(
            model=PricingModel.VOLUME,
            tiers=tiers(("100", "0.10"), ("1000", "0.05", "2"), (None, "0.01")),
        )
    )

    @pytest.mark.parametrize(
        ("units", "exact", "minor"),
        [
            ([60, 40], D("10"), 1000),  # 100 x 0.10 (at the upTo: first tier)
            ([60, 41], D("7.05"), 705),  # all 101 at 0.05, + $2
            ([500, 501], D("10.01"), 1001),  # all 1,001 at 0.01
        ],
    )
    def test_volume_prices_every_unit_at_the_tier_of_the_total(self, tenant, units, exact, minor):
        invoice = march_invoice_for(tenant, self.VOLUME, units, "v")
        line = usage_line(invoice)
        assert (line.amount_exact, line.amount_minor) == (exact, minor)

    PACKAGE = RuleSpec(rule=Rule(model=PricingModel.PACKAGE, unit_price=D("5"), package_size=100))

    @pytest.mark.parametrize(
        ("units", "minor"), [([50, 50], 500), ([50, 51], 1000), ([100, 100, 50], 1500)]
    )
    def test_package_blocks_on_the_total(self, tenant, units, minor):
        # Per event, [50, 50] would be two blocks ($10); on the total it is one.
        invoice = march_invoice_for(tenant, self.PACKAGE, units, "k")
        assert usage_line(invoice).amount_minor == minor

    def test_included_usage_is_listed_at_zero(self, tenant):
        invoice = march_invoice_for(
            tenant, RuleSpec(rule=Rule(model=PricingModel.INCLUDED)), [7], "i"
        )
        assert lines(invoice) == [("base", 0), ("usage", 0)]
        assert invoice.status == Invoice.Status.PAID  # nothing to pay

    def test_usage_of_another_customer_or_environment_does_not_count(self, tenant):
        the_plan = plan(tenant.test, features={"tokens": per_unit("1")})
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        usage(tenant.test, (utc(2026, 3, 3), 2))
        usage(tenant.test, (utc(2026, 3, 3), 100), reference="someone_else")
        usage(tenant.live, (utc(2026, 3, 3), 100))
        usage(tenant.test, (utc(2026, 4, 1, 0, 1), 100))  # the next period
        close(APRIL_CLOSE)
        (invoice,) = invoices_of(sub)
        assert usage_line(invoice).quantity == 2


@pytest.mark.django_db
class TestBaseFee:
    def test_in_advance_base_at_the_start_usage_on_the_next_invoice(self, tenant):
        the_plan = plan(tenant.test, price="49", timing=ADVANCE)
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        close(utc(2026, 3, 1, 10))
        (initial,) = invoices_of(sub)
        assert initial.type == Invoice.Type.IN_ADVANCE_INITIAL
        assert (initial.period_start, initial.period_end) == (utc(2026, 3, 1), utc(2026, 4, 1))
        assert lines(initial) == [("base", 4900)]
        assert initial.status == Invoice.Status.DUE
        assert initial.number == "INV-TEST-000001"

        usage(tenant.test, (utc(2026, 3, 20), 300))
        close(APRIL_CLOSE)
        _, april = invoices_of(sub)
        assert april.type == Invoice.Type.REGULAR
        assert (april.period_start, april.period_end) == (utc(2026, 4, 1), utc(2026, 5, 1))
        assert lines(april) == [("base", 4900), ("usage", 60)]
        assert usage_line(april).service_start == utc(2026, 3, 1)  # March's usage
        assert april.total_minor == 4960
        assert april.number == "INV-TEST-000002"

    def test_in_arrears_base_and_usage_at_the_end(self, tenant):
        the_plan = plan(tenant.test, price="49")
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        usage(tenant.test, (utc(2026, 3, 20), 300))
        close(utc(2026, 3, 31, 23))
        assert invoices_of(sub) == []
        close(APRIL_CLOSE)
        (march,) = invoices_of(sub)
        assert (march.period_start, march.period_end) == (utc(2026, 3, 1), utc(2026, 4, 1))
        assert lines(march) == [("base", 4900), ("usage", 60)]

    def test_a_late_cycle_catches_up_every_period(self, tenant):
        the_plan = plan(tenant.test, price="10")
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        usage(tenant.test, (utc(2026, 3, 2), 100), (utc(2026, 4, 2), 200), (utc(2026, 5, 2), 5))
        close(utc(2026, 6, 1, 0, 5))
        invoices = invoices_of(sub)
        assert [i.period_start.month for i in invoices] == [3, 4, 5]
        assert [lines(i) for i in invoices] == [
            [("base", 1000), ("usage", 20)],
            [("base", 1000), ("usage", 40)],
            [("base", 1000), ("usage", 1)],
        ]

    def test_trial_is_not_billed_paid_periods_start_at_its_end(self, tenant):
        the_plan = plan(tenant.test, price="20", timing=ADVANCE)
        sub = subscribe(tenant.test, the_plan, at=MARCH, trial_days=14)
        usage(tenant.test, (utc(2026, 3, 5), 1000))  # during the trial
        close(utc(2026, 3, 10))
        assert invoices_of(sub) == []
        close(utc(2026, 3, 15, 1))
        (first,) = invoices_of(sub)
        assert first.type == Invoice.Type.IN_ADVANCE_INITIAL
        assert (first.period_start, first.period_end) == (utc(2026, 3, 15), utc(2026, 4, 15))
        assert lines(first) == [("base", 2000)]

    def test_scheduled_downgrade_bills_the_cheaper_plan_from_the_period_end(self, tenant):
        pro = plan(tenant.test, "pro", price="90", timing=ADVANCE)
        basic = plan(tenant.test, "basic", price="30", timing=ADVANCE)
        sub = subscribe(tenant.test, pro, at=MARCH)
        close(utc(2026, 3, 1, 10))
        subscription_change_plan(subscription=sub, plan=basic, now=utc(2026, 3, 10), actor=SYSTEM)
        close(APRIL_CLOSE)  # before the period job applied the downgrade
        _, april = invoices_of(sub)
        assert lines(april)[0] == ("base", 3000)
        assert april.lines.get(kind="base").plan_id == basic.pk

    def test_in_arrears_upgrade_splits_the_base_fee_by_time(self, tenant):
        small = plan(tenant.test, "small", price="31")
        large = plan(tenant.test, "large", price="62")
        sub = subscribe(tenant.test, small, at=MARCH)
        # 10 days on small, 21 on large (March has 31): 10 + 42 = 52.
        subscription_change_plan(
            subscription=sub, plan=large, timing="now", now=utc(2026, 3, 11), actor=SYSTEM
        )
        close(APRIL_CLOSE)
        (march,) = invoices_of(sub)
        assert lines(march) == [("base", 1000), ("base", 4200)]


@pytest.mark.django_db
class TestCapsAndOverage:
    def test_units_beyond_a_billing_period_cap_at_the_overage_price(self, tenant):
        rule = per_unit("0.01", max_usage=D(1000), overage_unit_price=D("0.02"))
        invoice = march_invoice_for(tenant, rule, [700, 800], "c")
        assert lines(invoice) == [("base", 0), ("usage", 1000), ("overage", 1000)]
        overage = invoice.lines.get(kind="overage")
        assert overage.quantity == 500
        snapshot = usage_line(invoice)
        assert (snapshot.units_total, snapshot.units_beyond_cap) == (1500, 500)

    def test_hard_cap_units_beyond_are_listed_not_billed(self, tenant):
        rule = RuleSpec(rule=Rule(model=PricingModel.INCLUDED, max_usage=D(1000)))
        invoice = march_invoice_for(tenant, rule, [1500], "h")
        overage = invoice.lines.get(kind="overage")
        assert (overage.quantity, overage.amount_minor) == (500, 0)
        assert "not billed" in overage.description

    def test_daily_cap_counts_per_day(self, tenant):
        rule = RuleSpec(
            rule=Rule(model=PricingModel.INCLUDED, max_usage=D(100), overage_unit_price=D("0.05")),
            reset_interval="day",
        )
        the_plan = plan(tenant.test, "daily", features={"tokens": rule})
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        # Day 1: 150 (50 beyond), day 2: 80 (none beyond). A period cap would see 130.
        usage(tenant.test, (utc(2026, 3, 2, 1), 100), (utc(2026, 3, 2, 23), 50))
        usage(tenant.test, (utc(2026, 3, 3, 5), 80))
        close(APRIL_CLOSE)
        (invoice,) = invoices_of(sub)
        overage = invoice.lines.get(kind="overage")
        assert (overage.quantity, overage.amount_exact, overage.amount_minor) == (50, D("2.5"), 250)

    def test_cap_that_never_resets_counts_earlier_periods(self, tenant):
        rule = RuleSpec(
            rule=Rule(model=PricingModel.INCLUDED, max_usage=D(100), overage_unit_price=D("1")),
            reset_interval="never",
        )
        the_plan = plan(tenant.test, "lifetime", features={"tokens": rule})
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        usage(tenant.test, (utc(2026, 3, 2), 80), (utc(2026, 4, 2), 50))
        close(MAY_CLOSE)
        march, april = invoices_of(sub)
        assert not march.lines.filter(kind="overage").exists()
        assert april.lines.get(kind="overage").quantity == 30  # 80 + 50 - 100


@pytest.mark.django_db
class TestRounding:
    def test_each_line_rounded_once_and_the_exact_amount_kept(self, tenant):
        the_plan = plan(
            tenant.test,
            features={"tokens": per_unit("0.00125"), "images": per_unit("0.0015")},
        )
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        usage(tenant.test, (utc(2026, 3, 2), 100))  # 0.125 -> 12 (half to even)
        usage(tenant.test, (utc(2026, 3, 2), 3), feature="images")  # 0.0045 -> 0
        close(APRIL_CLOSE)
        (invoice,) = invoices_of(sub)
        tokens, images = usage_line(invoice, "tokens"), usage_line(invoice, "images")
        assert (tokens.amount_exact, tokens.amount_minor) == (D("0.125"), 12)
        assert (images.amount_exact, images.amount_minor) == (D("0.0045"), 0)
        # The total adds the rounded lines (rounding the exact sum 0.1295 would give 13).
        assert invoice.total_minor == 12

    def test_prorated_line_keeps_the_repeating_fraction(self, tenant):
        the_plan = plan(tenant.test, price="10")
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        subscription_cancel(subscription=sub, mode="immediate", now=utc(2026, 3, 11), actor=SYSTEM)
        close(utc(2026, 3, 11, 0, 5))
        (invoice,) = invoices_of(sub)
        base = invoice.lines.get(kind="base")
        # 10 days of 31: 10 x 10 / 31 = 3.2258064516...
        assert str(base.amount_exact).startswith("3.225806451612903225806451612")
        assert base.amount_minor == 323
        assert (invoice.period_start, invoice.period_end) == (utc(2026, 3, 1), utc(2026, 3, 11))


@pytest.mark.django_db
class TestIdempotency:
    def test_running_the_cycle_again_creates_nothing(self, tenant):
        the_plan = plan(tenant.test, price="10", timing=ADVANCE)
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        for _ in range(3):
            close(APRIL_CLOSE)
        assert len(invoices_of(sub)) == 2
        state = SubscriptionBilling.objects.get(subscription=sub)
        assert state.billed_through == utc(2026, 4, 1)

    def test_a_lost_cursor_does_not_bill_a_period_twice(self, tenant):
        the_plan = plan(tenant.test, price="10", timing=ADVANCE)
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        close(APRIL_CLOSE)
        SubscriptionBilling.objects.filter(subscription=sub).delete()
        close(APRIL_CLOSE)
        assert len(invoices_of(sub)) == 2

    def test_the_database_refuses_a_second_invoice_for_a_period(self, tenant):
        from django.db import IntegrityError, transaction

        the_plan = plan(tenant.test, price="10", timing=ADVANCE)
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        close(utc(2026, 3, 2))
        (invoice,) = invoices_of(sub)
        with pytest.raises(IntegrityError) as caught, transaction.atomic():
            Invoice.objects.create(
                environment=tenant.test,
                number="X-1",
                sequence=999,
                subscription=sub,
                customer_id=sub.customer_id,
                type=Invoice.Type.REGULAR,
                reason=Invoice.Reason.PERIOD,
                status=Invoice.Status.DUE,
                currency="USD",
                period_start=invoice.period_start,
                period_end=invoice.period_end,
                issued_at=invoice.issued_at,
                due_at=invoice.due_at,
            )
        assert "invoice_one_per_subscription_period" in str(caught.value)


@pytest.mark.django_db
class TestLateEvents:
    def test_late_usage_lands_on_the_next_invoice_as_an_adjustment(self, tenant):
        rule = RuleSpec(
            rule=Rule(
                model=PricingModel.GRADUATED,
                tiers=tiers(("1000", "0.01"), (None, "0.001")),
            )
        )
        the_plan = plan(tenant.test, price="5", features={"tokens": rule})
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        usage(tenant.test, (utc(2026, 3, 10), 900))
        close(APRIL_CLOSE)
        (march,) = invoices_of(sub)
        assert lines(march) == [("base", 500), ("usage", 900)]  # 900 x 0.01

        # Events of March arrive in April, after March's invoice.
        usage(tenant.test, (utc(2026, 3, 25), 300), (utc(2026, 3, 31, 23, 59), 100))
        usage(tenant.test, (utc(2026, 4, 3), 10))
        close(MAY_CLOSE)
        _, april = invoices_of(sub)
        late = april.lines.get(kind="late_usage")
        # March now: 1,000 x 0.01 + 300 x 0.001 = 10.30; billed 9.00: +1.30.
        assert (late.amount_exact, late.amount_minor) == (D("1.3"), 130)
        assert (late.service_start, late.service_end) == (utc(2026, 3, 1), utc(2026, 4, 1))
        assert late.quantity == 400
        assert "late usage" in late.description.lower()
        assert lines(april) == [("base", 500), ("usage", 10), ("late_usage", 130)]

        # Told once: the next invoice has no adjustment.
        close(utc(2026, 6, 1, 0, 5))
        assert not invoices_of(sub)[2].lines.filter(kind="late_usage").exists()

    def test_late_usage_lines_in_feature_order(self, tenant):
        """Several features' late usage: one line each, in feature-key order like the usage
        lines (they followed the rules' creation order, i.e. random ids, before)."""
        from apps.plans.models import PlanFeatureRule

        the_plan = plan(tenant.test, features={"zeta": per_unit("0.01"), "alpha": per_unit("0.02")})
        # Make the rules' own order the reverse of the keys'.
        PlanFeatureRule.objects.filter(plan=the_plan, feature__key="zeta").update(
            created_at=utc(2026, 1, 1)
        )
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        close(APRIL_CLOSE)
        usage(tenant.test, (utc(2026, 3, 5), 100), feature="zeta")
        usage(tenant.test, (utc(2026, 3, 5), 100), feature="alpha")
        close(MAY_CLOSE)
        april = invoices_of(sub)[-1]
        late = april.lines.filter(kind="late_usage").order_by("position")
        # alpha 100 x 0.02 = 2.00; zeta 100 x 0.01 = 1.00
        assert [(line.feature.key, line.amount_minor) for line in late] == [
            ("alpha", 200),
            ("zeta", 100),
        ]

    def test_late_usage_of_a_period_that_had_none(self, tenant):
        the_plan = plan(tenant.test, price="5", timing=ADVANCE)
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        close(APRIL_CLOSE)
        usage(tenant.test, (utc(2026, 3, 5), 1000))
        close(MAY_CLOSE)
        may = invoices_of(sub)[-1]
        assert lines(may) == [("base", 500), ("late_usage", 200)]


@pytest.mark.django_db
class TestCancellation:
    def test_immediate_cancel_of_an_in_advance_plan_gives_a_credit_note(self, tenant):
        the_plan = plan(tenant.test, price="31", timing=ADVANCE)
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        close(utc(2026, 3, 1, 10))
        usage(tenant.test, (utc(2026, 3, 5), 500))
        subscription_cancel(subscription=sub, mode="immediate", now=utc(2026, 3, 11), actor=SYSTEM)
        close(utc(2026, 3, 11, 0, 5))
        initial, credit, final = invoices_of(sub)
        # 21 unused days of 31 at $31: $21 back.
        assert credit.type == Invoice.Type.CREDIT
        assert credit.status == Invoice.Status.PAID
        assert credit.credited_invoice_id == initial.pk
        assert lines(credit) == [("cancellation", -2100)]
        assert credit.total_minor == -2100
        # The usage of the ten days is billed on a final invoice.
        assert final.reason == Invoice.Reason.FINAL
        assert lines(final) == [("usage", 100)]
        close(utc(2026, 3, 12))
        assert len(invoices_of(sub)) == 3

    def test_cancel_at_period_end_ends_without_credit(self, tenant):
        the_plan = plan(tenant.test, price="31", timing=ADVANCE)
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        subscription_cancel(subscription=sub, now=utc(2026, 3, 11), actor=SYSTEM)
        close(APRIL_CLOSE)
        (initial,) = invoices_of(sub)  # no April invoice, no credit note, no usage
        assert initial.type == Invoice.Type.IN_ADVANCE_INITIAL


@pytest.mark.django_db
class TestCredits:
    def test_plan_credits_granted_each_period(self, tenant):
        the_plan = plan(tenant.test, price="10", timing=ADVANCE)
        model = credit_model_create(
            environment=tenant.test, name="AI credits", denomination="AI", actor=SYSTEM
        )
        plan_allocation_set(
            environment=tenant.test,
            plan_key=the_plan.key,
            credit_model=model,
            credit_amount=D(100),
            actor=SYSTEM,
        )
        sub = subscribe(tenant.test, the_plan, at=MARCH)
        close(utc(2026, 3, 1, 10))
        close(APRIL_CLOSE)
        close(APRIL_CLOSE)
        grants = CreditGrant.objects.filter(grant_type=GrantType.PLAN).order_by("granted_at")
        assert [g.amount for g in grants] == [D(100), D(100)]
        assert all(str(sub.pk) in g.source_ref for g in grants)


@pytest.mark.django_db
def test_the_period_job_and_the_cycle_agree(tenant):
    """The cycle rebuilds ended periods from the history; the subscription, moved on by
    the period job, ends up in the period after the last one billed."""
    the_plan = plan(tenant.test, price="10")
    sub = subscribe(tenant.test, the_plan, at=utc(2026, 1, 31, 9))
    subscription_advance_periods(now=utc(2026, 4, 5))
    close(utc(2026, 4, 5))
    periods = [(i.period_start, i.period_end) for i in invoices_of(sub)]
    assert periods == [
        (utc(2026, 1, 31), utc(2026, 2, 28)),
        (utc(2026, 2, 28), utc(2026, 3, 31)),
    ]
    sub.refresh_from_db()
    assert sub.current_period_start == utc(2026, 3, 31)
