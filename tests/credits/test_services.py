"""Credit services: grants, spend order, limits, debt, reversal, plan periods, rollover,
expiry, weights and prices — each checked against the ledger invariants."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.core.errors import Conflict, NotFound, ValidationFailed
from apps.credits import weights as weight_cache
from apps.credits.models import (
    CreditGrant,
    CreditPool,
    CreditPrice,
    CreditTransaction,
    CreditWeight,
    PlanCreditAllocation,
)
from apps.credits.selectors import credit_quote, pool_balance
from apps.credits.services import (
    WeightEntry,
    credit_model_create,
    credit_weight_withdraw,
    credit_weights_publish,
    credits_deduct,
    credits_deduct_for_usage,
    credits_grant_plan_period,
    credits_reverse,
    credits_rollover,
    credits_settle_pool,
    plan_allocation_set,
)
from apps.events.flags import EventFlags
from tests.credits.conftest import (
    SYSTEM,
    assert_ledger_consistent,
    grant,
    in_days,
    lapse,
    make_feature,
    make_model,
    make_pool,
)
from tests.factories import make_customer

pytestmark = pytest.mark.django_db
D = Decimal


def usage(
    pool: CreditPool,
    units: str,
    *,
    feature=None,
    model: str = "",
    ref: str | None = None,
    at: dt.datetime | None = None,
):
    feature = feature or make_feature(pool.environment, f"f_{uuid.uuid4().hex[:8]}")
    return credits_deduct_for_usage(
        environment=pool.environment,
        customer_id=pool.customer_id,
        feature_id=feature.pk,
        model=model,
        units=D(units),
        occurred_at=at or timezone.now(),
        event_ref=ref or uuid.uuid4().hex,
        denomination=pool.denomination,
    )


class TestCreditModels:
    def test_one_model_per_denomination(self, tenant):
        make_model(tenant.test, "AI_CREDITS")
        with pytest.raises(Conflict) as caught:
            make_model(tenant.test, "AI_CREDITS")
        assert caught.value.code == "denomination_exists"
        # Another environment may define the same denomination.
        make_model(tenant.live, "AI_CREDITS")

    def test_cap_only_with_capped_policy(self, tenant):
        with pytest.raises(ValidationFailed):
            make_model(tenant.test, "A", rollover_policy="capped")
        with pytest.raises(ValidationFailed):
            make_model(tenant.test, "B", rollover_policy="full", rollover_cap=D(5))
        model = make_model(tenant.test, "C", rollover_policy="capped", rollover_cap=D(5))
        assert model.rollover_cap == 5

    def test_pool_copies_the_model_rules_and_is_unique(self, tenant):
        pool = make_pool(tenant.test, hard_limit=False, rollover_policy="full")
        assert (pool.hard_limit, pool.rollover_policy, pool.balance) == (False, "full", 0)
        again = make_pool(tenant.test)
        assert again.pk == pool.pk
        assert CreditPool.objects.filter(customer_id=pool.customer_id).count() == 1


class TestGrants:
    def test_grant_adds_to_balance_and_ledger(self, tenant):
        pool = make_pool(tenant.test)
        g = grant(pool, "100.5", "promotional")
        pool.refresh_from_db()
        assert pool.balance == D("100.5")
        assert g.remaining == g.amount == D("100.5")
        entry = CreditTransaction.objects.get(pool=pool)
        assert (entry.transaction_type, entry.amount, entry.grant_id) == ("grant", D("100.5"), g.pk)
        assert_ledger_consistent(pool)

    def test_idempotent_by_pool_type_and_source_ref(self, tenant):
        pool = make_pool(tenant.test)
        first = grant(pool, "10", "purchased", source_ref="pi_1")
        second = grant(pool, "10", "purchased", source_ref="pi_1")
        assert first.pk == second.pk and second.created is False
        # Same reference, another type: another grant.
        grant(pool, "5", "refund", source_ref="pi_1")
        pool.refresh_from_db()
        assert pool.balance == 15
        assert_ledger_consistent(pool)

    def test_refuses_bad_amounts_and_past_expiry(self, tenant):
        pool = make_pool(tenant.test)
        for amount in ("0", "-1", "0.0000001"):
            with pytest.raises(ValidationFailed):
                grant(pool, amount)
        with pytest.raises(ValidationFailed):
            grant(pool, "1", expires_at=timezone.now() - dt.timedelta(minutes=1))
        with pytest.raises(ValidationFailed):
            grant(pool, "1", "bogus")
        assert CreditTransaction.objects.count() == 0

    def test_purchased_grant_is_stamped_with_the_book_price(self, tenant):
        pool = make_pool(tenant.test)
        CreditPrice.objects.create(
            environment=tenant.test,
            denomination="AI_CREDITS",
            currency="EUR",
            price_per_credit=D("0.01"),
            effective_from=timezone.now() - dt.timedelta(days=1),
        )
        bought = grant(pool, "100", "purchased")
        assert (bought.unit_price, bought.currency) == (D("0.01"), "EUR")
        explicit = grant(pool, "1", "purchased", unit_price=D("0.5"))
        assert (explicit.unit_price, explicit.currency) == (D("0.5"), "USD")
        given = grant(pool, "1", "promotional")
        assert given.unit_price is None


class TestConsumptionOrder:
    def test_priority_then_earliest_expiry_then_oldest(self, tenant):
        pool = make_pool(tenant.test)
        bought = grant(pool, "10", "purchased")  # priority 50
        no_expiry = grant(pool, "10", "manual")  # priority 40, never expires
        late = grant(pool, "10", "manual", expires_at=in_days(30))
        early = grant(pool, "10", "manual", expires_at=in_days(5))
        older_same = grant(pool, "10", "manual", expires_at=in_days(60))
        newer_same = grant(pool, "10", "manual", expires_at=in_days(60))
        urgent = grant(pool, "10", "manual", priority=1)
        order = [urgent, early, late, older_same, newer_same, no_expiry, bought]
        for step, expected in enumerate(order):
            credits_deduct(pool=pool, amount=D(10), actor=SYSTEM)
            for index, g in enumerate(order):
                g.refresh_from_db()
                assert g.remaining == (0 if index <= step else 10), (step, index)
            assert expected.remaining == 0
        assert_ledger_consistent(pool)

    def test_one_deduction_spans_grants(self, tenant):
        pool = make_pool(tenant.test)
        first = grant(pool, "3", expires_at=in_days(1))
        second = grant(pool, "5", expires_at=in_days(2))
        entry = credits_deduct(pool=pool, amount=D(4), actor=SYSTEM)
        drawn = {row.grant_id: row.amount for row in entry.consumptions.all()}
        assert drawn == {first.pk: D(3), second.pk: D(1)}
        assert_ledger_consistent(pool)


class TestLimits:
    def test_hard_limit_records_shortfall_and_stops_at_zero(self, tenant):
        pool = make_pool(tenant.test, hard_limit=True)
        grant(pool, "5")
        result = usage(pool, "8")
        assert (result.deducted, result.shortfall, result.balance_after) == (D(5), D(3), D(0))
        assert result.insufficient and result.hard_limit
        assert result.response_fields()["insufficientCredits"] is True
        assert result.response_fields()["creditShortfall"] == D(3)
        flags = EventFlags()
        result.stamp(flags)
        assert flags.to_json() == {
            "credit_deducted": "5",
            "insufficient_credits": True,
            "credit_shortfall": "3",
        }
        # An empty hard pool: the event still gets an entry with its whole shortfall.
        again = usage(pool, "2")
        assert (again.deducted, again.shortfall) == (D(0), D(2))
        entry = CreditTransaction.objects.get(pk=again.transaction_id)
        assert (entry.amount, entry.shortfall, entry.requested) == (D(0), D(2), D(2))
        # Later checks deny.
        balance = pool_balance(tenant.test, customer_id=pool.customer_id, denomination="AI_CREDITS")
        assert balance.balance == 0 and not balance.can_cover(D("0.000001"))
        assert_ledger_consistent(pool)

    def test_manual_deduction_on_hard_pool_refuses_and_writes_nothing(self, tenant):
        pool = make_pool(tenant.test, hard_limit=True)
        grant(pool, "5")
        with pytest.raises(Conflict) as caught:
            credits_deduct(pool=pool, amount=D(6), actor=SYSTEM)
        assert caught.value.code == "insufficient_credits"
        assert CreditTransaction.objects.filter(pool=pool).count() == 1
        assert_ledger_consistent(pool)

    def test_soft_limit_goes_negative_and_next_credits_pay_the_debt(self, tenant):
        pool = make_pool(tenant.test, hard_limit=False)
        grant(pool, "5")
        result = usage(pool, "8")
        assert (result.deducted, result.shortfall, result.balance_after) == (D(8), D(0), D(-3))
        entry = CreditTransaction.objects.get(pk=result.transaction_id)
        assert entry.unbacked == 3
        assert_ledger_consistent(pool)
        balance = pool_balance(tenant.test, customer_id=pool.customer_id, denomination="AI_CREDITS")
        assert balance.available == 0 and balance.can_cover(D(100))  # soft: never denied
        topup = grant(pool, "10", "purchased")
        topup.refresh_from_db()
        pool.refresh_from_db()
        assert pool.balance == 7
        assert topup.remaining == 7  # 3 went to the debt
        assert_ledger_consistent(pool)
        small = grant(pool, "1", "promotional")
        assert small.remaining == 1  # no debt left

    def test_debt_larger_than_the_top_up(self, tenant):
        pool = make_pool(tenant.test, hard_limit=False)
        usage(pool, "10")
        first = grant(pool, "4")
        first.refresh_from_db()
        assert first.remaining == 0
        pool.refresh_from_db()
        assert pool.balance == -6
        assert_ledger_consistent(pool)
        grant(pool, "10")
        pool.refresh_from_db()
        assert pool.balance == 4
        assert_ledger_consistent(pool)


class TestUsageDeduction:
    def test_replay_of_an_event_changes_nothing(self, tenant):
        pool = make_pool(tenant.test)
        grant(pool, "10")
        feature = make_feature(tenant.test)
        first = usage(pool, "3", feature=feature, ref="evt_1")
        second = usage(pool, "3", feature=feature, ref="evt_1")
        assert second.replayed and second.transaction_id == first.transaction_id
        assert (second.deducted, second.balance_after, second.credits) == (3, 7, 3)
        pool.refresh_from_db()
        assert pool.balance == 7
        assert_ledger_consistent(pool)

    def test_zero_units_take_no_lock_and_write_nothing(self, tenant):
        pool = make_pool(tenant.test)
        grant(pool, "10")
        result = usage(pool, "0")
        assert (result.deducted, result.balance_after, result.transaction_id) == (0, 10, None)
        assert CreditTransaction.objects.filter(pool=pool).count() == 1

    def test_pool_created_on_first_usage_and_choice_of_pool(self, tenant):
        make_model(tenant.test, "AI_CREDITS", hard_limit=True)
        customer = make_customer(tenant.test, "cus_new")
        feature = make_feature(tenant.test)

        def charge(denomination=None):
            return credits_deduct_for_usage(
                environment=tenant.test,
                customer_id=customer.pk,
                feature_id=feature.pk,
                model=None,
                units=D(2),
                occurred_at=timezone.now(),
                event_ref=uuid.uuid4().hex,
                denomination=denomination,
            )

        # No pool yet, one credit model: its pool is created, empty, so all is shortfall.
        result = charge()
        assert result.pool is not None and (result.deducted, result.shortfall) == (0, 2)
        make_model(tenant.test, "IMAGES", hard_limit=False)
        assert charge("IMAGES").balance_after == -2
        # Two pools now: the denomination must be named.
        with pytest.raises(ValidationFailed) as caught:
            charge()
        assert caught.value.code == "denomination_required"
        with pytest.raises(ValidationFailed):
            charge("UNKNOWN")

    def test_no_credit_model_means_nothing_to_charge(self, tenant):
        customer = make_customer(tenant.test, "cus_plain")
        feature = make_feature(tenant.test)
        result = credits_deduct_for_usage(
            environment=tenant.test,
            customer_id=customer.pk,
            feature_id=feature.pk,
            model="gpt-4o",
            units=D(5),
            occurred_at=timezone.now(),
            event_ref="e1",
        )
        assert result.pool is None and result.deducted == 0 and result.credits == 5

    def test_runs_inside_the_callers_transaction(self, tenant):
        pool = make_pool(tenant.test)
        grant(pool, "10")

        class Boom(Exception):
            pass

        def charge_then_fail() -> None:
            with transaction.atomic():
                usage(pool, "4")
                raise Boom

        with pytest.raises(Boom):
            charge_then_fail()
        pool.refresh_from_db()
        assert pool.balance == 10
        assert CreditTransaction.objects.filter(pool=pool).count() == 1

    def test_hot_path_query_count(self, tenant):
        pool = make_pool(tenant.test)
        grant(pool, "100")
        feature = make_feature(tenant.test)
        usage(pool, "1", feature=feature)  # warms the weight cache
        with CaptureQueriesContext(connection) as queries:
            usage(pool, "1", feature=feature)
        # savepoint, lock, grants, grant update, entry, consumption, pool, release
        assert len(queries) <= 8, [q["sql"] for q in queries]


class TestWeights:
    def publish(self, environment, effective_from, *entries):
        return credit_weights_publish(
            environment=environment,
            effective_from=effective_from,
            entries=[WeightEntry(f, m, D(v)) for f, m, v in entries],
            actor=SYSTEM,
        )

    def test_model_weight_beats_feature_weight_and_default_is_one(self, tenant):
        pool = make_pool(tenant.test)
        grant(pool, "1000")
        feature = make_feature(tenant.test, "chat")
        past = timezone.now() - dt.timedelta(days=1)
        CreditWeight.objects.create(
            environment=tenant.test,
            feature=feature,
            model="",
            credits_per_unit=2,
            effective_from=past,
        )
        CreditWeight.objects.create(
            environment=tenant.test,
            feature=feature,
            model="gpt-4o",
            credits_per_unit=5,
            effective_from=past,
        )
        by_model = usage(pool, "3", feature=feature, model="gpt-4o")
        assert (by_model.credits, by_model.weight.match) == (D(15), "model")
        by_feature = usage(pool, "3", feature=feature, model="claude-3")
        assert (by_feature.credits, by_feature.weight.match) == (D(6), "feature_default")
        other = usage(pool, "3", model="gpt-4o")
        assert (other.credits, other.weight.match, other.weight.weight_id) == (D(3), "none", None)
        assert_ledger_consistent(pool)

    def test_rounding_to_six_places(self, tenant):
        pool = make_pool(tenant.test)
        grant(pool, "10")
        feature = make_feature(tenant.test)
        CreditWeight.objects.create(
            environment=tenant.test,
            feature=feature,
            credits_per_unit=D("0.333333"),
            effective_from=timezone.now() - dt.timedelta(days=1),
        )
        result = usage(pool, "0.0000015", feature=feature)
        assert result.credits == D("0.000000")  # 0.0000004999995 rounds half-even to 0
        result = usage(pool, "1.5", feature=feature)
        assert result.credits == D("0.500000")

    def test_a_future_weight_is_not_used_before_its_instant(self, tenant):
        pool = make_pool(tenant.test)
        grant(pool, "1000")
        feature = make_feature(tenant.test)
        CreditWeight.objects.create(
            environment=tenant.test,
            feature=feature,
            credits_per_unit=2,
            effective_from=timezone.now() - dt.timedelta(days=1),
        )
        assert usage(pool, "1", feature=feature).credits == 2  # cache now holds the old set
        instant = timezone.now() + dt.timedelta(hours=1)
        self.publish(tenant.test, instant, (feature, "", "7"))
        assert usage(pool, "1", feature=feature).credits == 2
        assert usage(pool, "1", feature=feature, at=instant - dt.timedelta(seconds=1)).credits == 2
        assert usage(pool, "1", feature=feature, at=instant).credits == 7
        assert usage(pool, "1", feature=feature, at=instant + dt.timedelta(days=3)).credits == 7
        quote = credit_quote(tenant.test, feature_id=feature.pk, model=None, units=D(10))
        assert quote.credits == 20

    def test_other_processes_see_a_publish_through_the_stamp(self, tenant):
        feature = make_feature(tenant.test)
        old = weight_cache.weight_for(tenant.test.pk, feature.pk, "", timezone.now())
        assert old.match == "none"
        # Another process publishes: our copy is stale until the stamp is read again.
        CreditWeight.objects.create(
            environment=tenant.test,
            feature=feature,
            credits_per_unit=3,
            effective_from=timezone.now() - dt.timedelta(seconds=1),
        )
        weight_cache._entries.get(tenant.test.pk).checked_at -= weight_cache.CHECK_SECONDS
        weight_cache.get_redis().set(weight_cache.stamp_key(tenant.test.pk), b"other")
        new = weight_cache.weight_for(tenant.test.pk, feature.pk, "", timezone.now())
        assert new.credits_per_unit == 3

    def test_publish_rules(self, tenant):
        feature = make_feature(tenant.test)
        soon = timezone.now() + dt.timedelta(seconds=10)
        with pytest.raises(ValidationFailed):
            self.publish(tenant.test, soon, (feature, "", "1"))  # needs a minute's notice
        with pytest.raises(ValidationFailed):
            self.publish(tenant.test, timezone.now() - dt.timedelta(days=1), (feature, "", "1"))
        later = timezone.now() + dt.timedelta(days=1)
        with pytest.raises(ValidationFailed):
            self.publish(tenant.test, later, (feature, "", "1"), (feature, "", "2"))
        with pytest.raises(ValidationFailed):
            self.publish(tenant.test, later, (feature, "", "0"))
        with pytest.raises(ValidationFailed):
            self.publish(tenant.test, later, (feature, "", "1.0000001"))
        first = self.publish(tenant.test, later, (feature, "", "1.5"), (feature, "m", "2"))
        replay = self.publish(tenant.test, later, (feature, "m", "2"), (feature, "", "1.5"))
        assert {w.pk for w in replay} == {w.pk for w in first}
        with pytest.raises(Conflict) as caught:
            self.publish(tenant.test, later, (feature, "", "9"))
        assert caught.value.code == "weight_conflict"
        other = make_feature(tenant.live, "summarize")
        with pytest.raises(ValidationFailed):
            self.publish(tenant.test, later, (other, "", "1"))

    def test_a_weight_in_force_is_never_edited_nor_withdrawn(self, tenant):
        feature = make_feature(tenant.test)
        in_force = CreditWeight.objects.create(
            environment=tenant.test,
            feature=feature,
            credits_per_unit=2,
            effective_from=timezone.now() - dt.timedelta(days=1),
        )
        with pytest.raises(Conflict) as caught:
            credit_weight_withdraw(weight=in_force, actor=SYSTEM)
        assert caught.value.code == "weight_in_force"
        with pytest.raises(DatabaseError), transaction.atomic():
            CreditWeight.objects.filter(pk=in_force.pk).update(credits_per_unit=3)
        in_force.refresh_from_db()
        assert in_force.credits_per_unit == 2
        # A scheduled weight may be withdrawn (not edited).
        (scheduled,) = self.publish(tenant.test, in_days(2), (feature, "", "4"))
        with pytest.raises(DatabaseError), transaction.atomic():
            CreditWeight.objects.filter(pk=scheduled.pk).update(credits_per_unit=5)
        credit_weight_withdraw(weight=scheduled, actor=SYSTEM)
        assert not CreditWeight.objects.filter(pk=scheduled.pk).exists()


class TestAppendOnly:
    def test_ledger_rows_cannot_be_updated(self, tenant):
        pool = make_pool(tenant.test)
        grant(pool, "10")
        with pytest.raises(DatabaseError), transaction.atomic():
            CreditTransaction.objects.filter(pool=pool).update(amount=D(1000))
        CreditPrice.objects.create(
            environment=tenant.test,
            denomination="X",
            price_per_credit=1,
            effective_from=timezone.now(),
        )
        with pytest.raises(DatabaseError), transaction.atomic():
            CreditPrice.objects.update(price_per_credit=2)

    def test_hard_pool_balance_cannot_go_negative_even_by_hand(self, tenant):
        pool = make_pool(tenant.test, hard_limit=True)
        with pytest.raises(DatabaseError), transaction.atomic():
            CreditPool.objects.filter(pk=pool.pk).update(balance=-1)


class TestReversal:
    def test_reversal_restores_the_grants_drawn(self, tenant):
        pool = make_pool(tenant.test)
        a = grant(pool, "3", expires_at=in_days(1))
        b = grant(pool, "10", expires_at=in_days(2))
        result = usage(pool, "5", ref="evt_r")
        reversal = credits_reverse(environment=tenant.test, event_ref="evt_r", actor=SYSTEM)
        assert reversal.transaction_type == "reversal" and reversal.amount == 5
        a.refresh_from_db()
        b.refresh_from_db()
        assert (a.remaining, b.remaining) == (3, 10)
        # Idempotent by event; by id it is a conflict.
        again = credits_reverse(environment=tenant.test, event_ref="evt_r", actor=SYSTEM)
        assert again.pk == reversal.pk
        with pytest.raises(Conflict) as caught:
            credits_reverse(
                environment=tenant.test, transaction_id=result.transaction_id, actor=SYSTEM
            )
        assert caught.value.code == "already_reversed"
        assert credits_reverse(environment=tenant.test, event_ref="nope", actor=SYSTEM) is None
        assert_ledger_consistent(pool)

    def test_only_deductions_and_only_in_the_environment(self, tenant, outsider):
        pool = make_pool(tenant.test)
        grant(pool, "3")
        entry = CreditTransaction.objects.get(pool=pool)
        with pytest.raises(Conflict) as caught:
            credits_reverse(environment=tenant.test, transaction_id=entry.pk, actor=SYSTEM)
        assert caught.value.code == "not_reversible"
        deduction = credits_deduct(pool=pool, amount=D(1), actor=SYSTEM)
        for env in (tenant.live, outsider.test):
            with pytest.raises(NotFound):
                credits_reverse(environment=env, transaction_id=deduction.pk, actor=SYSTEM)

    def test_credits_of_a_lapsed_grant_lapse_again(self, tenant):
        pool = make_pool(tenant.test)
        g = grant(pool, "10", expires_at=in_days(1))
        usage(pool, "4", ref="evt_l")
        lapse(g)
        credits_settle_pool(pool_id=pool.pk)
        pool.refresh_from_db()
        assert (pool.balance, pool.total_expired) == (0, 6)
        credits_reverse(environment=tenant.test, event_ref="evt_l", actor=SYSTEM)
        pool.refresh_from_db()
        assert (pool.balance, pool.total_expired, pool.total_reversed) == (0, 10, 4)
        assert_ledger_consistent(pool)

    def test_reversal_in_debt(self, tenant):
        pool = make_pool(tenant.test, hard_limit=False)
        grant(pool, "5")
        usage(pool, "5", ref="backed")  # drawn from the grant
        usage(pool, "3", ref="unbacked")  # all debt
        pool.refresh_from_db()
        assert pool.balance == -3
        # Reversing the backed one gives 5 back to the grant, which pays the other's debt.
        credits_reverse(environment=tenant.test, event_ref="backed", actor=SYSTEM)
        pool.refresh_from_db()
        assert pool.balance == 2
        assert_ledger_consistent(pool)
        credits_reverse(environment=tenant.test, event_ref="unbacked", actor=SYSTEM)
        pool.refresh_from_db()
        assert pool.balance == 5
        assert_ledger_consistent(pool)


class TestPlanPeriodsAndRollover:
    def setup_plan(self, environment, **model_kwargs):
        model = make_model(environment, "AI_CREDITS", **model_kwargs)
        plan_allocation_set(
            environment=environment,
            plan_key="pro",
            credit_model=model,
            credit_amount=D(100),
            actor=SYSTEM,
        )
        return model, make_customer(environment, "cus_plan")

    def grant_period(self, environment, customer, start, end):
        return credits_grant_plan_period(
            environment=environment,
            customer=customer,
            plan_key="pro",
            period_start=start,
            period_end=end,
            source_ref="sub_1",
        )

    def test_plan_grant_is_idempotent_per_period(self, tenant):
        _, customer = self.setup_plan(tenant.test)
        start = timezone.now() - dt.timedelta(days=1)
        end = start + dt.timedelta(days=30)
        (first,) = self.grant_period(tenant.test, customer, start, end)
        (again,) = self.grant_period(tenant.test, customer, start, end)
        assert first.pk == again.pk and first.grant_type == "plan"
        pool = CreditPool.objects.get(customer=customer)
        assert (pool.balance, pool.current_period_start, pool.current_period_end) == (
            100,
            start,
            end,
        )
        assert_ledger_consistent(pool)

    def test_allocation_expiry_months(self, tenant):
        model = make_model(tenant.test, "AI_CREDITS", grant_expiry_months=2)
        plan_allocation_set(
            environment=tenant.test,
            plan_key="pro",
            credit_model=model,
            credit_amount=D(5),
            actor=SYSTEM,
        )
        customer = make_customer(tenant.test, "cus_exp")
        start = dt.datetime(2031, 1, 31, tzinfo=dt.UTC)
        (g,) = self.grant_period(
            tenant.test, customer, start, dt.datetime(2031, 2, 28, tzinfo=dt.UTC)
        )
        assert g.expires_at == dt.datetime(2031, 3, 31, tzinfo=dt.UTC)
        plan_allocation_set(
            environment=tenant.test,
            plan_key="pro",
            credit_model=model,
            credit_amount=D(5),
            grant_expiry_months=1,
            actor=SYSTEM,
        )
        assert PlanCreditAllocation.objects.get().grant_expiry_months == 1

    def roll(self, environment, policy, cap=None, *, use="30"):
        kwargs = {"rollover_policy": policy}
        if cap is not None:
            kwargs["rollover_cap"] = D(cap)
        _, customer = self.setup_plan(environment, hard_limit=True, **kwargs)
        start = timezone.now() - dt.timedelta(days=30)
        end = timezone.now() + dt.timedelta(days=1)
        self.grant_period(environment, customer, start, end)
        pool = CreditPool.objects.get(customer=customer)
        grant(pool, "7", "purchased")  # never touched by rollover
        credits_deduct(pool=pool, amount=D(use), actor=SYSTEM)  # from the plan grant first
        # The period ends.
        CreditPool.objects.filter(pk=pool.pk).update(
            current_period_end=timezone.now() - dt.timedelta(seconds=1)
        )
        credits_settle_pool(pool_id=pool.pk)
        pool.refresh_from_db()
        assert_ledger_consistent(pool)
        return pool

    def test_rollover_none_drops_unused_plan_credits(self, tenant):
        pool = self.roll(tenant.test, "none")
        assert (pool.balance, pool.total_expired) == (7, 70)
        assert not CreditGrant.objects.filter(pool=pool, grant_type="rollover").exists()

    def test_rollover_full_carries_everything(self, tenant):
        pool = self.roll(tenant.test, "full")
        assert (pool.balance, pool.total_expired, pool.total_adjusted) == (77, 0, 0)
        carried = CreditGrant.objects.get(pool=pool, grant_type="rollover")
        assert (carried.amount, carried.remaining) == (70, 70)
        assert CreditGrant.objects.get(pool=pool, grant_type="plan").closed_at is not None

    def test_rollover_capped_keeps_up_to_the_cap(self, tenant):
        pool = self.roll(tenant.test, "capped", "50")
        assert (pool.balance, pool.total_expired) == (57, 20)
        assert CreditGrant.objects.get(pool=pool, grant_type="rollover").amount == 50

    def test_capped_rollover_under_the_cap_keeps_all(self, tenant):
        pool = self.roll(tenant.test, "capped", "500", use="95")
        assert (pool.balance, pool.total_expired) == (12, 0)

    def test_rollover_is_idempotent_and_runs_before_the_next_period(self, tenant):
        _, customer = self.setup_plan(tenant.test, rollover_policy="full")
        start = timezone.now() - dt.timedelta(days=30)
        mid = timezone.now() - dt.timedelta(seconds=5)
        self.grant_period(tenant.test, customer, start, mid)
        pool = CreditPool.objects.get(customer=customer)
        credits_deduct(pool=pool, amount=D(40), actor=SYSTEM)
        # The next period's grant first rolls the previous one over.
        self.grant_period(tenant.test, customer, mid, mid + dt.timedelta(days=30))
        pool.refresh_from_db()
        assert pool.balance == 160
        assert pool.rolled_over_through == mid
        assert not credits_rollover(pool=pool, period_end=mid, actor=SYSTEM)
        assert credits_settle_pool(pool_id=pool.pk).entries == 0
        pool.refresh_from_db()
        assert pool.balance == 160
        assert_ledger_consistent(pool)


class TestExpiry:
    def test_lapsed_grants_expire_once(self, tenant):
        pool = make_pool(tenant.test)
        g = grant(pool, "10", expires_at=in_days(1))
        grant(pool, "5")
        credits_deduct(pool=pool, amount=D(4), actor=SYSTEM)
        lapse(g)
        assert credits_settle_pool(pool_id=pool.pk).entries == 1
        assert credits_settle_pool(pool_id=pool.pk).entries == 0
        pool.refresh_from_db()
        assert (pool.balance, pool.total_expired) == (5, 6)
        assert_ledger_consistent(pool)

    def test_a_lapsed_grant_is_never_spent_even_before_the_task_runs(self, tenant):
        pool = make_pool(tenant.test, hard_limit=True)
        g = grant(pool, "10", expires_at=in_days(1))
        lapse(g)
        result = usage(pool, "3")
        assert (result.deducted, result.shortfall) == (0, 3)
        pool.refresh_from_db()
        assert (pool.balance, pool.total_expired) == (0, 10)
        assert_ledger_consistent(pool)


def test_credit_model_validation_of_expiry_months(tenant):
    with pytest.raises(ValidationFailed):
        credit_model_create(
            environment=tenant.test,
            name="x",
            denomination="X",
            grant_expiry_months=0,
            actor=SYSTEM,
        )
