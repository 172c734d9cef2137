"""Subscription services: lifecycle, anchoring through the period job, plan changes,
the one-live-subscription rule (also under concurrency), and the rules selector."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from decimal import Decimal as D

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.core.errors import Conflict, NotFound, ValidationFailed
from apps.customers.models import Customer
from apps.plans.models import PlanFeatureRule
from apps.plans.pricing import PricingModel, Rule, charge
from apps.plans.services import RuleSpec, plan_archive
from apps.subscriptions.models import Subscription, SubscriptionChange
from apps.subscriptions.selectors import active_subscription_rules
from apps.subscriptions.services import (
    subscription_advance_periods,
    subscription_cancel,
    subscription_cancel_revert,
    subscription_change_cancel,
    subscription_change_plan,
    subscription_create,
    subscription_set_past_due,
)
from tests.conftest import make_tenant
from tests.factories import make_customer
from tests.plans.helpers import SYSTEM, make_plan


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def subscribe(tenant, plan, *, customer=None, at=None, **kwargs) -> Subscription:
    customer = (
        customer or Customer.objects.get_or_create(environment=tenant.test, reference_id="cus_1")[0]
    )
    return subscription_create(
        environment=tenant.test, customer=customer, plan=plan, now=at, actor=SYSTEM, **kwargs
    )


def reload(subscription: Subscription) -> Subscription:
    return Subscription.objects.select_related("plan").get(pk=subscription.pk)


def period(subscription: Subscription) -> tuple[dt.datetime, dt.datetime]:
    return subscription.current_period_start, subscription.current_period_end


@pytest.mark.django_db
class TestCreate:
    def test_starts_today_at_midnight_and_runs_one_interval(self, tenant):
        sub = subscribe(tenant, make_plan(tenant.test), at=utc(2025, 1, 31, 14, 5))
        sub = reload(sub)
        assert sub.status == Subscription.Status.ACTIVE
        assert period(sub) == (utc(2025, 1, 31), utc(2025, 2, 28))
        assert (sub.billing_anchor, sub.interval_months) == (utc(2025, 1, 31), 1)

    def test_trial_then_paid_periods_anchored_on_the_trial_end(self, tenant):
        sub = subscribe(tenant, make_plan(tenant.test), at=utc(2025, 1, 1, 9), trial_days=14)
        assert sub.status == Subscription.Status.TRIALING
        assert period(sub) == (utc(2025, 1, 1), utc(2025, 1, 15))
        result = subscription_advance_periods(now=utc(2025, 1, 15, 0, 1))
        assert (result.trials_ended, result.advanced) == (1, 1)
        sub = reload(sub)
        assert sub.status == Subscription.Status.ACTIVE
        assert period(sub) == (utc(2025, 1, 15), utc(2025, 2, 15))

    def test_only_active_plans(self, tenant):
        draft = make_plan(tenant.test, "draft", active=False)
        with pytest.raises(Conflict) as caught:
            subscribe(tenant, draft)
        assert caught.value.code == "plan_not_active"
        archived = make_plan(tenant.test, "old")
        plan_archive(plan=archived, actor=SYSTEM)
        with pytest.raises(Conflict):
            subscribe(tenant, archived)

    def test_plan_and_customer_must_be_of_the_environment(self, tenant):
        live_customer = make_customer(tenant.live, "cus_live")
        with pytest.raises(NotFound):
            subscribe(tenant, make_plan(tenant.test), customer=live_customer)
        with pytest.raises(NotFound):
            subscribe(tenant, make_plan(tenant.live, "live_plan"))

    def test_bad_trial_and_grace_are_validation_errors(self, tenant):
        plan = make_plan(tenant.test)
        with pytest.raises(ValidationFailed) as caught:
            subscribe(tenant, plan, trial_days=-1, grace_period_days=1000)
        assert set(caught.value.fields) == {"trialDays", "gracePeriod"}

    def test_one_live_subscription_per_customer(self, tenant):
        pro, basic = make_plan(tenant.test, "pro"), make_plan(tenant.test, "basic", price=9)
        first = subscribe(tenant, pro)
        with pytest.raises(Conflict) as caught:
            subscribe(tenant, basic)
        assert caught.value.code == "subscription_exists"
        assert caught.value.extra["subscriptionId"] == str(first.pk)
        # Another customer is unaffected; a cancelled subscription frees the slot.
        subscribe(tenant, basic, customer=make_customer(tenant.test, "cus_2"))
        subscription_cancel(subscription=first, mode="immediate", actor=SYSTEM)
        assert subscribe(tenant, basic).plan_id == basic.pk

    def test_several_when_the_organization_allows_it(self, tenant):
        tenant.org.allow_multiple_subscriptions = True
        tenant.org.save()
        pro, addon = make_plan(tenant.test, "pro"), make_plan(tenant.test, "addon", price=5)
        subscribe(tenant, pro)
        subscribe(tenant, addon)
        assert Subscription.objects.filter(status="active").count() == 2

    def test_the_database_refuses_a_second_exclusive_live_subscription(self, tenant):
        sub = subscribe(tenant, make_plan(tenant.test))
        clone = Subscription.objects.get(pk=sub.pk)
        clone.id = uuid.uuid4()
        with pytest.raises(IntegrityError), transaction.atomic():
            clone.save(force_insert=True)


@pytest.mark.django_db
class TestPeriodJob:
    def test_month_end_anchor_in_a_leap_year(self, tenant):
        sub = subscribe(tenant, make_plan(tenant.test), at=utc(2024, 1, 31, 10))
        subscription_advance_periods(now=utc(2024, 2, 15))
        assert period(reload(sub)) == (utc(2024, 1, 31), utc(2024, 2, 29))
        subscription_advance_periods(now=utc(2024, 2, 29, 0, 0, 1))
        assert period(reload(sub)) == (utc(2024, 2, 29), utc(2024, 3, 31))
        subscription_advance_periods(now=utc(2024, 4, 1))
        assert period(reload(sub)) == (utc(2024, 3, 31), utc(2024, 4, 30))

    def test_catches_up_several_periods_at_once(self, tenant):
        sub = subscribe(tenant, make_plan(tenant.test), at=utc(2025, 1, 31))
        result = subscription_advance_periods(now=utc(2025, 6, 15))
        assert result.advanced == 4  # Feb 28, Mar 31, Apr 30, May 31
        assert period(reload(sub)) == (utc(2025, 5, 31), utc(2025, 6, 30))

    def test_annual_from_a_leap_day(self, tenant):
        plan = make_plan(tenant.test, "yearly", interval_months=12, price=490)
        sub = subscribe(tenant, plan, at=utc(2024, 2, 29, 23))
        assert period(reload(sub)) == (utc(2024, 2, 29), utc(2025, 2, 28))
        subscription_advance_periods(now=utc(2025, 3, 1))
        assert period(reload(sub)) == (utc(2025, 2, 28), utc(2026, 2, 28))
        subscription_advance_periods(now=utc(2028, 3, 1))
        assert period(reload(sub)) == (utc(2028, 2, 29), utc(2029, 2, 28))

    def test_idempotent(self, tenant):
        sub = subscribe(tenant, make_plan(tenant.test), at=utc(2025, 1, 10))
        first = subscription_advance_periods(now=utc(2025, 2, 11))
        again = subscription_advance_periods(now=utc(2025, 2, 11))
        assert (first.advanced, again.advanced) == (1, 0)
        assert period(reload(sub)) == (utc(2025, 2, 10), utc(2025, 3, 10))

    def test_past_due_subscriptions_keep_their_calendar(self, tenant):
        sub = subscribe(tenant, make_plan(tenant.test), at=utc(2025, 1, 10))
        subscription_set_past_due(
            subscription=sub, past_due=True, now=utc(2025, 1, 15), actor=SYSTEM
        )
        subscription_advance_periods(now=utc(2025, 2, 11))
        sub = reload(sub)
        assert (sub.status, period(sub)[0]) == ("past_due", utc(2025, 2, 10))
        subscription_set_past_due(
            subscription=sub, past_due=False, now=utc(2025, 2, 12), actor=SYSTEM
        )
        assert reload(sub).status == "active"


@pytest.mark.django_db
class TestCancel:
    def test_at_period_end_then_revert_then_again(self, tenant):
        sub = subscribe(tenant, make_plan(tenant.test), at=utc(2025, 1, 10))
        sub = subscription_cancel(subscription=sub, now=utc(2025, 1, 20), actor=SYSTEM)
        assert (sub.status, sub.cancel_at, sub.cancel_mode) == (
            "active",
            utc(2025, 2, 10),
            "end_of_period",
        )
        # Idempotent: a second request changes nothing.
        assert subscription_cancel(
            subscription=sub, now=utc(2025, 1, 21), actor=SYSTEM
        ).cancel_at == utc(2025, 2, 10)

        sub = subscription_cancel_revert(subscription=sub, now=utc(2025, 1, 22), actor=SYSTEM)
        assert (sub.cancel_at, sub.cancel_mode, sub.cancelled_at) == (None, "", None)
        with pytest.raises(Conflict) as caught:
            subscription_cancel_revert(subscription=sub, now=utc(2025, 1, 22), actor=SYSTEM)
        assert caught.value.code == "no_scheduled_cancellation"

        subscription_cancel(subscription=sub, now=utc(2025, 1, 25), actor=SYSTEM)
        subscription_advance_periods(now=utc(2025, 2, 9))
        assert reload(sub).status == "active"  # still inside the period
        result = subscription_advance_periods(now=utc(2025, 2, 10, 0, 5))
        sub = reload(sub)
        assert (result.cancelled, sub.status, sub.ended_at) == (1, "cancelled", utc(2025, 2, 10))
        assert period(sub) == (utc(2025, 1, 10), utc(2025, 2, 10))
        with pytest.raises(Conflict) as caught:
            subscription_cancel(subscription=sub, actor=SYSTEM)
        assert caught.value.code == "subscription_cancelled"

    def test_cancelling_a_trial_at_period_end_ends_it_with_the_trial(self, tenant):
        sub = subscribe(tenant, make_plan(tenant.test), at=utc(2025, 1, 1), trial_days=7)
        subscription_cancel(subscription=sub, now=utc(2025, 1, 3), actor=SYSTEM)
        subscription_advance_periods(now=utc(2025, 1, 9))
        sub = reload(sub)
        assert (sub.status, sub.ended_at) == ("cancelled", utc(2025, 1, 8))

    def test_immediately(self, tenant):
        pro, basic = make_plan(tenant.test, "pro"), make_plan(tenant.test, "basic", price=9)
        sub = subscribe(tenant, pro, at=utc(2025, 1, 10))
        subscription_change_plan(subscription=sub, plan=basic, now=utc(2025, 1, 11), actor=SYSTEM)
        sub = subscription_cancel(
            subscription=sub, mode="immediate", now=utc(2025, 1, 12, 8), actor=SYSTEM
        )
        assert (sub.status, sub.ended_at, sub.cancel_mode) == (
            "cancelled",
            utc(2025, 1, 12, 8),
            "immediate",
        )
        assert period(sub) == (utc(2025, 1, 10), utc(2025, 1, 12, 8))
        # The scheduled downgrade was dropped with it.
        assert SubscriptionChange.objects.get().status == "cancelled"
        with pytest.raises(ValidationFailed):
            subscription_cancel(subscription=sub, mode="later", actor=SYSTEM)


@pytest.mark.django_db
class TestPlanChanges:
    @pytest.fixture
    def plans(self, tenant):
        return {
            "basic": make_plan(tenant.test, "basic", price=9),
            "pro": make_plan(tenant.test, "pro", price=49),
            "max": make_plan(tenant.test, "max", price=99),
        }

    def test_upgrade_is_immediate_and_recorded(self, tenant, plans):
        sub = subscribe(tenant, plans["pro"], at=utc(2025, 1, 10))
        change = subscription_change_plan(
            subscription=sub, plan=plans["max"], now=utc(2025, 1, 20, 12), actor=SYSTEM
        )
        assert (change.change_type, change.timing, change.status) == ("upgrade", "now", "completed")
        assert (change.period_start, change.period_end) == (utc(2025, 1, 10), utc(2025, 2, 10))
        assert change.effective_at == change.fulfilled_at == utc(2025, 1, 20, 12)
        sub = reload(sub)
        assert sub.plan_id == plans["max"].pk
        assert period(sub) == (utc(2025, 1, 10), utc(2025, 2, 10))  # same interval: same period

    def test_downgrade_waits_for_the_period_end(self, tenant, plans):
        sub = subscribe(tenant, plans["pro"], at=utc(2025, 1, 10))
        change = subscription_change_plan(
            subscription=sub, plan=plans["basic"], now=utc(2025, 1, 15), actor=SYSTEM
        )
        assert (change.change_type, change.timing, change.status) == (
            "downgrade",
            "period_end",
            "pending",
        )
        assert change.effective_at == utc(2025, 2, 10)
        assert reload(sub).plan_id == plans["pro"].pk
        with pytest.raises(Conflict) as caught:
            subscription_change_plan(
                subscription=sub, plan=plans["max"], now=utc(2025, 1, 15), actor=SYSTEM
            )
        assert caught.value.code == "change_pending"

        result = subscription_advance_periods(now=utc(2025, 2, 10, 1))
        assert result.changes_applied == 1
        sub = reload(sub)
        assert sub.plan_id == plans["basic"].pk
        assert period(sub) == (utc(2025, 2, 10), utc(2025, 3, 10))
        change.refresh_from_db()
        assert (change.status, change.fulfilled_at) == ("completed", utc(2025, 2, 10, 1))

    def test_cancel_a_scheduled_change(self, tenant, plans):
        sub = subscribe(tenant, plans["pro"], at=utc(2025, 1, 10))
        subscription_change_plan(
            subscription=sub, plan=plans["basic"], now=utc(2025, 1, 15), actor=SYSTEM
        )
        change = subscription_change_cancel(subscription=sub, now=utc(2025, 1, 16), actor=SYSTEM)
        assert change.status == "cancelled"
        subscription_advance_periods(now=utc(2025, 2, 11))
        assert reload(sub).plan_id == plans["pro"].pk
        with pytest.raises(Conflict) as caught:
            subscription_change_cancel(subscription=sub, now=utc(2025, 2, 12), actor=SYSTEM)
        assert caught.value.code == "no_scheduled_change"

    def test_explicit_timing_and_type_win_over_prices(self, tenant, plans):
        sub = subscribe(tenant, plans["pro"], at=utc(2025, 1, 10))
        change = subscription_change_plan(
            subscription=sub,
            plan=plans["max"],
            timing="period_end",
            now=utc(2025, 1, 15),
            actor=SYSTEM,
        )
        assert (change.change_type, change.status) == ("upgrade", "pending")
        subscription_change_cancel(subscription=sub, now=utc(2025, 1, 16), actor=SYSTEM)
        change = subscription_change_plan(
            subscription=sub,
            plan=plans["basic"],
            change_type="upgrade",
            now=utc(2025, 1, 17),
            actor=SYSTEM,
        )
        assert (change.timing, change.status) == ("now", "completed")
        assert reload(sub).plan_id == plans["basic"].pk

    def test_prices_compare_per_month(self, tenant, plans):
        # 490 a year is ~40.83 a month: cheaper than 49 a month, so a downgrade.
        yearly = make_plan(tenant.test, "pro_yearly", price=490, interval_months=12)
        sub = subscribe(tenant, plans["pro"], at=utc(2025, 1, 10))
        change = subscription_change_plan(
            subscription=sub, plan=yearly, now=utc(2025, 1, 15), actor=SYSTEM
        )
        assert (change.change_type, change.effective_at) == ("downgrade", utc(2025, 2, 10))
        subscription_advance_periods(now=utc(2025, 2, 10))
        sub = reload(sub)
        # A new interval re-anchors at the switch: yearly periods from Feb 10.
        assert (sub.plan_id, sub.interval_months) == (yearly.pk, 12)
        assert period(sub) == (utc(2025, 2, 10), utc(2026, 2, 10))
        assert sub.billing_anchor == utc(2025, 2, 10)

    def test_upgrade_to_another_interval_restarts_the_period_today(self, tenant, plans):
        yearly = make_plan(tenant.test, "max_yearly", price=1500, interval_months=12)
        sub = subscribe(tenant, plans["pro"], at=utc(2025, 1, 10))
        subscription_change_plan(
            subscription=sub, plan=yearly, now=utc(2025, 1, 20, 15), actor=SYSTEM
        )
        sub = reload(sub)
        assert period(sub) == (utc(2025, 1, 20), utc(2026, 1, 20))
        assert sub.interval_months == 12

    def test_refusals(self, tenant, plans):
        sub = subscribe(tenant, plans["pro"])
        for plan, code in (
            (plans["pro"], "same_plan"),
            (make_plan(tenant.test, "euro", currency="EUR"), "currency_mismatch"),
            (
                make_plan(tenant.test, "arrears", billing_timing="in_arrears"),
                "billing_timing_mismatch",
            ),
            (make_plan(tenant.test, "draft", active=False), "plan_not_active"),
        ):
            with pytest.raises(Conflict) as caught:
                subscription_change_plan(subscription=sub, plan=plan, actor=SYSTEM)
            assert caught.value.code == code
        subscription_cancel(subscription=sub, actor=SYSTEM)
        with pytest.raises(Conflict) as caught:
            subscription_change_plan(subscription=sub, plan=plans["max"], actor=SYSTEM)
        assert caught.value.code == "cancellation_scheduled"
        with pytest.raises(ValidationFailed):
            subscription_change_plan(
                subscription=sub, plan=plans["max"], timing="soon", actor=SYSTEM
            )

    def test_actions_after_a_boundary_the_job_missed_apply_to_the_current_period(
        self, tenant, plans
    ):
        sub = subscribe(tenant, plans["pro"], at=utc(2025, 1, 10))
        # The period ended on Feb 10; the job has not run yet when these come in.
        change = subscription_change_plan(
            subscription=sub, plan=plans["basic"], now=utc(2025, 2, 11), actor=SYSTEM
        )
        assert (change.period_start, change.effective_at) == (utc(2025, 2, 10), utc(2025, 3, 10))
        subscription_change_cancel(subscription=sub, now=utc(2025, 3, 1), actor=SYSTEM)
        sub = subscription_cancel(subscription=sub, now=utc(2025, 4, 20), actor=SYSTEM)
        assert period(sub) == (utc(2025, 4, 10), utc(2025, 5, 10))
        assert sub.cancel_at == utc(2025, 5, 10)
        assert reload(sub).plan_id == plans["pro"].pk

    def test_scheduling_a_cancellation_drops_a_pending_change(self, tenant, plans):
        sub = subscribe(tenant, plans["pro"], at=utc(2025, 1, 10))
        subscription_change_plan(
            subscription=sub, plan=plans["basic"], now=utc(2025, 1, 15), actor=SYSTEM
        )
        subscription_cancel(subscription=sub, now=utc(2025, 1, 16), actor=SYSTEM)
        assert SubscriptionChange.objects.get().status == "cancelled"


@pytest.mark.django_db
class TestActiveRules:
    def capped_tokens(self) -> RuleSpec:
        return RuleSpec(
            rule=Rule(model=PricingModel.PER_UNIT, unit_price=D("0.01"), max_usage=D(100)),
            reset_interval=PlanFeatureRule.ResetInterval.DAY,
        )

    def test_rules_with_period_and_window_in_two_queries(self, tenant, outsider):
        plan = make_plan(
            tenant.test, "pro", features={"tokens": self.capped_tokens(), "seats": RuleSpec()}
        )
        customer = make_customer(tenant.test, "cus_1")
        sub = subscribe(tenant, plan, customer=customer, at=utc(2025, 1, 31))
        at = utc(2025, 2, 3, 17)
        with CaptureQueriesContext(connection) as queries:
            rules = active_subscription_rules(tenant.test, customer, at=at)
        assert len(queries.captured_queries) == 2
        assert [r.feature_key for r in rules] == ["seats", "tokens"]
        tokens = rules[1]
        assert (tokens.subscription_id, tokens.plan_key, tokens.currency) == (sub.pk, "pro", "USD")
        assert (tokens.period_start, tokens.period_end) == (utc(2025, 1, 31), utc(2025, 2, 28))
        assert (tokens.window_start, tokens.window_end) == (utc(2025, 2, 3), utc(2025, 2, 4))
        assert charge(tokens.rule, D(150)) == D(1)  # hard cap at 100 x 0.01
        assert rules[0].window_end == utc(2025, 2, 28)  # billing-period window

        only = active_subscription_rules(tenant.test, customer, at=at, feature_keys=["tokens"])
        assert [r.feature_key for r in only] == ["tokens"]
        assert active_subscription_rules(outsider.test, customer, at=at) == []
        assert active_subscription_rules(tenant.live, customer, at=at) == []

    def test_correct_before_the_period_job_runs(self, tenant):
        basic = make_plan(tenant.test, "basic", price=9, features={"lite": RuleSpec()})
        pro = make_plan(tenant.test, "pro", features={"tokens": self.capped_tokens()})
        customer = make_customer(tenant.test, "cus_1")
        sub = subscribe(tenant, pro, customer=customer, at=utc(2025, 1, 31))
        subscription_change_plan(subscription=sub, plan=basic, now=utc(2025, 2, 1), actor=SYSTEM)
        # The job has not run: the period rolls forward in memory, the downgrade applies.
        rules = active_subscription_rules(tenant.test, customer, at=utc(2025, 3, 5))
        assert [(r.plan_key, r.feature_key) for r in rules] == [("basic", "lite")]
        assert (rules[0].period_start, rules[0].period_end) == (utc(2025, 2, 28), utc(2025, 3, 31))
        # Before the boundary, the old plan still holds.
        before = active_subscription_rules(tenant.test, customer, at=utc(2025, 2, 27))
        assert [r.plan_key for r in before] == ["pro"]

    def test_a_passed_cancellation_and_cancelled_subscriptions_grant_nothing(self, tenant):
        customer = make_customer(tenant.test, "cus_1")
        sub = subscribe(tenant, make_plan(tenant.test), customer=customer, at=utc(2025, 1, 10))
        subscription_cancel(subscription=sub, now=utc(2025, 1, 15), actor=SYSTEM)
        assert active_subscription_rules(tenant.test, customer, at=utc(2025, 2, 9))
        assert active_subscription_rules(tenant.test, customer, at=utc(2025, 2, 10)) == []
        subscription_cancel(subscription=sub, mode="immediate", now=utc(2025, 1, 20), actor=SYSTEM)
        assert active_subscription_rules(tenant.test, customer, at=utc(2025, 1, 11)) == []

    def test_trial_rules_and_status(self, tenant):
        customer = make_customer(tenant.test, "cus_1")
        subscribe(
            tenant, make_plan(tenant.test), customer=customer, at=utc(2025, 1, 1), trial_days=10
        )
        [rule] = active_subscription_rules(tenant.test, customer, at=utc(2025, 1, 5))
        assert (rule.subscription_status, rule.period_end) == ("trialing", utc(2025, 1, 11))
        [rule] = active_subscription_rules(tenant.test, customer, at=utc(2025, 1, 12))
        assert (rule.subscription_status, rule.period_start, rule.period_end) == (
            "active",
            utc(2025, 1, 11),
            utc(2025, 2, 11),
        )


@pytest.mark.django_db(transaction=True)
class TestConcurrency:
    def run_threads(self, count: int, target) -> list:
        barrier = threading.Barrier(count)
        results: list = []
        lock = threading.Lock()

        def worker() -> None:
            try:
                barrier.wait()
                outcome = target()
            except Exception as exc:
                outcome = exc
            finally:
                connection.close()
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=worker) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        return results

    def test_concurrent_subscribes_create_one(self):
        tenant = make_tenant("Race")
        plan = make_plan(tenant.test)
        customer = make_customer(tenant.test, "cus_race")

        outcomes = self.run_threads(
            6,
            lambda: subscription_create(
                environment=tenant.test, customer=customer, plan=plan, actor=SYSTEM
            ),
        )
        created = [o for o in outcomes if isinstance(o, Subscription)]
        refused = [o for o in outcomes if isinstance(o, Conflict)]
        assert (len(created), len(refused)) == (1, 5), outcomes
        assert {o.code for o in refused} == {"subscription_exists"}
        assert Subscription.objects.filter(customer=customer).count() == 1

    def test_concurrent_period_jobs_advance_each_subscription_once(self):
        tenant = make_tenant("Clock")
        pro, basic = make_plan(tenant.test, "pro"), make_plan(tenant.test, "basic", price=9)
        subs = []
        for index in range(12):
            sub = subscription_create(
                environment=tenant.test,
                customer=make_customer(tenant.test, f"cus_{index}"),
                plan=pro,
                now=utc(2025, 1, 31),
                actor=SYSTEM,
            )
            if index % 3 == 0:
                subscription_change_plan(
                    subscription=sub, plan=basic, now=utc(2025, 2, 1), actor=SYSTEM
                )
            subs.append(sub)

        outcomes = self.run_threads(
            4, lambda: subscription_advance_periods(now=utc(2025, 4, 2), batch_size=3)
        )
        assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
        assert sum(o.advanced for o in outcomes) == 12 * 2  # into Feb 28 and Mar 31, no more
        assert sum(o.changes_applied for o in outcomes) == 4
        for sub in subs:
            assert period(reload(sub)) == (utc(2025, 3, 31), utc(2025, 4, 30))
        assert basic.subscriptions.count() == 4
        assert SubscriptionChange.objects.filter(status="completed").count() == 4
