"""Revenue at ingestion: what the customer's plan rule charges for each event, by hand.

Every expected figure below is worked out by hand from the rule (not by calling the
pricing functions), and the events' revenues of a period add up to the period's charge.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from django.utils import timezone

from apps.core.redis import get_redis
from apps.events.models import Event

from .conftest import batch_event, iso, rule

pytestmark = pytest.mark.django_db


def revenues(response) -> list[D]:
    ids = [int(item["id"]) for item in response.json()["events"] if item["id"] is not None]
    by_id = {e.id: e for e in Event.objects.filter(id__in=ids)}
    return [by_id[i].revenue_usd for i in ids]


class TestPerModel:
    def test_per_unit(self, platform):
        platform.subscribe(platform.plan("pro", {"tokens": rule(price="0.002")}))
        body = platform.event(units=1500).json()
        assert body["revenueAmount"] == "3"  # 1500 x 0.002
        assert body["revenueSource"] == "plan_rule"
        event = Event.objects.get(pk=int(body["id"]))
        assert (event.revenue_usd, event.revenue_source) == (D(3), "plan_rule")

    def test_explicit_revenue_wins(self, platform):
        platform.subscribe(platform.plan("pro", {"tokens": rule(price="0.002")}))
        body = platform.event(units=1500, revenueAmount="0.5").json()
        assert (body["revenueAmount"], body["revenueSource"]) == ("0.5", "explicit")

    def test_graduated_marginal_across_a_tier_boundary_within_one_batch(self, platform):
        tiers = [("100", "0.01", "0"), ("1000", "0.005", "2"), (None, "0.001", "0")]
        platform.subscribe(platform.plan("pro", {"tokens": rule("graduated", tiers=tiers)}))
        response = platform.batch([batch_event(units=u) for u in (60, 60, 900, 100)])
        assert response.status_code == 200
        # 60 in tier 1: 60 x 0.01 = 0.6
        # 60 more: 40 x 0.01 (tier 1) + 20 x 0.005 (tier 2) + 2 (tier 2 entered) = 2.5
        # 900 more (120 -> 1020): 880 x 0.005 + 20 x 0.001 = 4.42
        # 100 more (1020 -> 1120): 100 x 0.001 = 0.1
        assert revenues(response) == [D("0.6"), D("2.5"), D("4.42"), D("0.1")]
        # The period's charge: 100 x 0.01 + 900 x 0.005 + 2 + 120 x 0.001 = 7.62
        assert sum(revenues(response)) == D("7.62")
        # A later request goes on from 1120.
        assert platform.event(units=10).json()["revenueAmount"] == "0.01"

    def test_volume_repricing_can_be_negative(self, platform):
        tiers = [("100", "0.02", "0"), (None, "0.01", "0")]
        platform.subscribe(platform.plan("pro", {"tokens": rule("volume", tiers=tiers)}))
        response = platform.batch([batch_event(units=80), batch_event(units=40)])
        # 80 x 0.02 = 1.6; then all 120 at 0.01 = 1.2, so the second event is worth -0.4.
        assert revenues(response) == [D("1.6"), D("-0.4")]

    def test_package(self, platform):
        platform.subscribe(
            platform.plan("pro", {"tokens": rule("package", price="5", package=100)})
        )
        response = platform.batch([batch_event(units=u) for u in (50, 30, 30, 100)])
        # Blocks of 100 at 5: 50 -> 1 block (5), 80 -> still 1 (0), 110 -> 2 (5), 210 -> 3 (5).
        assert revenues(response) == [D(5), D(0), D(5), D(5)]

    def test_included_is_free(self, platform):
        platform.subscribe(platform.plan("pro", {"tokens": rule("included")}))
        body = platform.event(units=50).json()
        assert (body["revenueAmount"], body["revenueSource"]) == ("0", "plan_rule")

    def test_a_plan_in_another_currency_prices_nothing(self, platform):
        plan = platform.plan("pro", {"tokens": rule(price="1")}, currency="EUR")
        platform.subscribe(plan)
        body = platform.event(units=5).json()
        assert body["revenueAmount"] is None
        event = Event.objects.get(pk=int(body["id"]))
        assert event.flags["plan_revenue_skipped"] == "plan currency EUR"

    def test_no_subscription_no_plan_revenue(self, platform):
        platform.subscribe(platform.plan("pro", {"tokens": rule(price="1")}))
        body = platform.event(units=5, ref="walk_in").json()
        assert body["revenueAmount"] is None and body["revenueSource"] is None

    def test_feature_outside_the_plan(self, platform):
        platform.subscribe(platform.plan("pro", {"tokens": rule(price="1")}))
        assert platform.event("images", units=5).json()["revenueAmount"] is None

    def test_a_batch_repeating_a_recorded_key_does_not_move_later_events(self, platform):
        tiers = [("10", "1", "0"), (None, "0.1", "0")]
        platform.subscribe(platform.plan("pro", {"tokens": rule("graduated", tiers=tiers)}))
        platform.event(units=5, eventIdempotencyKey="k1")
        response = platform.batch(
            [batch_event(units=5, idempotencyKey="k1"), batch_event(units=5, idempotencyKey="k2")]
        )
        items = response.json()["events"]
        assert [i["status"] for i in items] == ["duplicate", "accepted"]
        # k2 sits at 5 -> 10, all in the first tier: 5 x 1.
        assert revenues(response) == [D(5)]


class TestCapsAndOverage:
    def test_hard_cap_flags_and_bills_only_within(self, platform):
        platform.subscribe(platform.plan("pro", {"tokens": rule(price="0.01", cap="100")}))
        first = platform.event(units=90, cost="0.2").json()
        assert "usageLimitExceeded" not in first and first["revenueAmount"] == "0.9"
        second = platform.event(units=30, cost="0.3").json()
        assert second["usageLimitExceeded"] is True
        assert (second["overageUnits"], second["usageLimit"]) == ("20", "100")
        assert second["overageBilled"] is False
        assert second["revenueAmount"] == "0.1"  # only the 10 units within the cap
        event = Event.objects.get(pk=int(second["id"]))
        # Stored with its real usage and cost (PRODUCT.md: events are facts).
        assert (event.usage_units, event.cost_usd) == (D(30), D("0.3"))
        assert event.flags["usage_limit_exceeded"] is True
        assert event.flags["overage_units"] == "20"

    def test_overage_price(self, platform):
        plan = platform.plan("pro", {"tokens": rule("included", cap="1000", overage="0.02")})
        platform.subscribe(plan)
        response = platform.batch([batch_event(units=800), batch_event(units=400)])
        # "First 1,000 free, then $0.02": 0, then 200 x 0.02 = 4.
        assert revenues(response) == [D(0), D(4)]
        items = response.json()["events"]
        assert items[1]["usageLimitExceeded"] is True and items[1]["overageBilled"] is True
        assert "usageLimitExceeded" not in items[0]

    def test_tiered_rule_with_a_daily_cap_counts_position_within_caps(self, platform):
        """Tiers count the period's units within caps; the cap resets daily."""
        tiers = [("120", "0.01", "0"), (None, "0.001", "0")]
        plan = platform.plan(
            "pro",
            {"tokens": rule("graduated", tiers=tiers, cap="100", overage="0.05", reset="day")},
        )
        platform.subscribe(plan, days_ago=3)
        today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
        day1 = today - dt.timedelta(days=2) + dt.timedelta(hours=10)
        day2 = today - dt.timedelta(days=1) + dt.timedelta(hours=10)
        first = platform.event(units=120, occurredAt=iso(day1)).json()
        # 100 within the day's cap: 100 x 0.01 = 1; 20 beyond at the overage price: 1.
        assert first["revenueAmount"] == "2" and first["overageUnits"] == "20"
        get_redis().flushdb()  # the next event reads the ledger (overage from the flags)
        second = platform.event(units=50, occurredAt=iso(day2)).json()
        # A new day: nothing beyond the cap. Tiers stand at 100 (within caps), not 120:
        # 20 x 0.01 + 30 x 0.001 = 0.23.
        assert second["revenueAmount"] == "0.23"
        assert "usageLimitExceeded" not in second
        third = platform.event(units=10, occurredAt=iso(day2 + dt.timedelta(hours=1))).json()
        assert third["revenueAmount"] == "0.01"  # 10 x 0.001, from the counters this time


class TestCreditsInBatches:
    @pytest.fixture
    def backed(self, platform):
        plan = platform.plan(
            "pro", {"tokens": rule(price="0.01", credits="AI_CREDITS", per_unit="2")}
        )
        for ref in ("cus_1", "cus_2"):
            platform.subscribe(plan, ref)
        for ref, amount in (("cus_1", "20"), ("cus_2", "100")):
            platform.grant(platform.pool(ref), amount)
        return platform

    def test_a_batch_charges_each_event_in_order(self, backed):
        from apps.credits.models import CreditPool, CreditTransaction
        from tests.credits.conftest import assert_ledger_consistent

        response = backed.batch(
            [
                batch_event(units=4, ref="cus_1"),  # 8 credits
                batch_event(units=5, ref="cus_2"),  # 10
                batch_event(units=4, ref="cus_1"),  # 8
                batch_event(units=4, ref="cus_1"),  # 8 asked, 4 left: shortfall 4
                batch_event(units=1, ref="cus_2"),  # 2
            ]
        )
        items = response.json()["events"]
        assert [i["creditsDeducted"] for i in items] == ["8", "10", "8", "4", "2"]
        assert [i["remainingBalance"] for i in items] == ["12", "90", "4", "0", "88"]
        assert [i.get("insufficientCredits", False) for i in items] == [
            False,
            False,
            False,
            True,
            False,
        ]
        assert items[3]["creditShortfall"] == "4"
        short = Event.objects.get(pk=int(items[3]["id"]))
        assert short.flags["credit_shortfall"] == "4" and short.usage_units == D(4)
        for pool in CreditPool.objects.filter(environment=backed.env):
            assert_ledger_consistent(pool)
        refs = set(
            CreditTransaction.objects.filter(transaction_type="deduction").values_list(
                "event_ref", flat=True
            )
        )
        assert refs == {i["id"] for i in items}
        check = backed.check()
        assert (check["allowed"], check["reason"]["code"]) == (False, "credits_exhausted")

    def test_single_events_and_a_batch_charge_the_same(self, backed):
        from apps.credits.models import CreditTransaction

        def ledger(ref):
            return list(
                CreditTransaction.objects.filter(
                    pool__customer__reference_id=ref, transaction_type="deduction"
                )
                .order_by("sequence")
                .values_list("amount", "requested", "shortfall", "balance_after")
            )

        for units in (3, 4, 5):
            backed.event(units=units, ref="cus_1")
        backed.batch([batch_event(units=u, ref="cus_2") for u in (3, 4, 5)])
        single = ledger("cus_1")
        assert [row[0] for row in single] == [D(-6), D(-8), D(-6)]  # 20 - 6 - 8 = 6 left
        batch = ledger("cus_2")
        assert [row[:3] for row in batch] == [
            (D(-6), D(6), D(0)),
            (D(-8), D(8), D(0)),
            (
                D(-10),
                D(10),
                D(0),
            ),
        ]

    def test_no_credit_model_flags_the_event(self, platform):
        plan = platform.plan("pro", {"tokens": rule(price="1", credits="NOPE", per_unit="1")})
        platform.subscribe(plan)
        single = platform.event(units=2).json()
        assert single["creditError"]["code"] == "unknown_denomination"
        items = platform.batch([batch_event(units=1), batch_event(units=1)]).json()["events"]
        assert all(i["creditError"]["code"] == "unknown_denomination" for i in items)
        assert Event.objects.filter(flags__credit_error="unknown_denomination").count() == 3
