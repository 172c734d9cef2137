"""Pricing math, with every expected amount worked out by hand in the comments."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from apps.plans.pricing import (
    PricingModel,
    Rule,
    Tier,
    cap_split,
    charge,
    marginal_charge,
    rule_errors,
    usage_charge,
)

M = PricingModel

# 0-1,000 free; 1,001-10,000 at 0.002 plus a 5 flat fee once entered; above at 0.001.
GRADUATED = Rule(
    model=M.GRADUATED,
    tiers=(
        Tier(D(1000), D(0)),
        Tier(D(10000), D("0.002"), D(5)),
        Tier(None, D("0.001")),
    ),
)
# All units at one price: ≤100 at 0.05; ≤1,000 at 0.04 + 2; above at 0.03 + 10.
VOLUME = Rule(
    model=M.VOLUME,
    tiers=(
        Tier(D(100), D("0.05")),
        Tier(D(1000), D("0.04"), D(2)),
        Tier(None, D("0.03"), D(10)),
    ),
)
PACKAGE = Rule(model=M.PACKAGE, unit_price=D(5), package_size=1000)
PER_UNIT = Rule(model=M.PER_UNIT, unit_price=D("0.002"))


class TestModels:
    @pytest.mark.parametrize(
        ("units", "expected"),
        [
            (D(0), D(0)),
            (D(1), D(0)),
            (D(1000), D(0)),  # exactly at the first upTo: the next tier is not entered
            (D(1001), D("5.002")),  # 1 * 0.002 + flat 5
            (D(10000), D(23)),  # 9,000 * 0.002 = 18, + 5
            (D(10001), D("23.001")),  # 23 + 1 * 0.001 (last tier has no flat fee)
            (D(15000), D(28)),  # 23 + 5,000 * 0.001
            (D("1000.5"), D("5.001")),  # 0.5 * 0.002 + 5
        ],
    )
    def test_graduated(self, units, expected):
        assert charge(GRADUATED, units) == expected

    def test_graduated_flat_fee_on_the_first_tier_only_once_used(self):
        rule = Rule(model=M.GRADUATED, tiers=(Tier(D(10), D(1), D(3)), Tier(None, D(0))))
        assert charge(rule, D(0)) == 0
        assert charge(rule, D(1)) == 4  # 1 + 3
        assert charge(rule, D(10)) == 13  # 10 + 3
        assert charge(rule, D(500)) == 13  # the free tier adds nothing

    @pytest.mark.parametrize(
        ("units", "expected"),
        [
            (D(0), D(0)),
            (D(100), D(5)),  # 100 * 0.05, still the first tier
            (D(101), D("6.04")),  # all 101 * 0.04 = 4.04, + 2
            (D(1000), D(42)),  # 40 + 2
            (D(1001), D("40.03")),  # all 1,001 * 0.03 = 30.03, + 10: cheaper than 1,000
        ],
    )
    def test_volume(self, units, expected):
        assert charge(VOLUME, units) == expected

    @pytest.mark.parametrize(
        ("units", "expected"),
        [
            (D(0), D(0)),
            (D(1), D(5)),
            (D(999), D(5)),
            (D(1000), D(5)),  # exactly N: one block
            (D(1001), D(10)),  # N + 1: two blocks
            (D(2000), D(10)),
            (D("2000.5"), D(15)),  # a part of a block is a whole block
        ],
    )
    def test_package(self, units, expected):
        assert charge(PACKAGE, units) == expected

    def test_package_of_one_unit_is_per_unit_rounded_up(self):
        rule = Rule(model=M.PACKAGE, unit_price=D("0.5"), package_size=1)
        assert charge(rule, D(3)) == D("1.5")
        assert charge(rule, D("3.2")) == D(2)

    def test_per_unit(self):
        assert charge(PER_UNIT, D(1500)) == D(3)
        assert charge(PER_UNIT, D("0.5")) == D("0.001")
        assert charge(PER_UNIT, D(0)) == 0

    def test_included_is_free(self):
        assert charge(Rule(model=M.INCLUDED), D(10**9)) == 0

    def test_exact_without_rounding(self):
        units = D("123456789012.123456789012")
        price = D("0.000000000001")
        # 24 significant digits * 1e-12: exact at 24 decimal places, no rounding.
        assert charge(Rule(model=M.PER_UNIT, unit_price=price), units) == D(
            "0.123456789012123456789012"
        )
        thirds = Rule(model=M.PER_UNIT, unit_price=D("0.333333333333"))
        assert charge(thirds, D(3)) == D("0.999999999999")

    def test_negative_units_are_refused(self):
        with pytest.raises(ValueError, match="negative"):
            charge(PER_UNIT, D(-1))


class TestCaps:
    def test_overage_beyond_the_cap(self):
        rule = Rule(
            model=M.PER_UNIT,
            unit_price=D("0.01"),
            max_usage=D(1000),
            overage_unit_price=D("0.02"),
        )
        assert charge(rule, D(1000)) == D(10)  # at the cap: no overage
        assert charge(rule, D(1001)) == D("10.02")  # 10 + 1 * 0.02
        assert charge(rule, D(1500)) == D(20)  # 10 + 500 * 0.02

    def test_a_hard_cap_bills_nothing_beyond_it(self):
        rule = Rule(model=M.PER_UNIT, unit_price=D("0.01"), max_usage=D(1000))
        assert rule.is_hard_capped
        assert charge(rule, D(1500)) == D(10)

    def test_included_allowance_then_overage(self):
        # "First 1,000 included, then 0.02 per unit."
        rule = Rule(model=M.INCLUDED, max_usage=D(1000), overage_unit_price=D("0.02"))
        assert charge(rule, D(1000)) == 0
        assert charge(rule, D(1200)) == D(4)

    def test_graduated_with_overage(self):
        rule = Rule(
            model=M.GRADUATED,
            tiers=GRADUATED.tiers,
            max_usage=D(10000),
            overage_unit_price=D("0.5"),
        )
        # Tiers price the first 10,000 (= 23); 2 units beyond at 0.5.
        assert charge(rule, D(10002)) == D(24)

    def test_overage_counted_in_another_window(self):
        # A daily cap: the caller says how many units of the period were beyond it.
        rule = Rule(
            model=M.PER_UNIT, unit_price=D("0.01"), max_usage=D(100), overage_unit_price=D("0.1")
        )
        assert charge(rule, D(500), overage_units=D(30)) == D("7.7")  # 470 * 0.01 + 30 * 0.1
        with pytest.raises(ValueError, match="overage_units"):
            charge(rule, D(5), overage_units=D(6))

    def test_cap_split(self):
        rule = Rule(model=M.INCLUDED, max_usage=D(100))
        assert cap_split(rule, D(90), D(20)) == (D(10), D(10))
        assert cap_split(rule, D(100), D(5)) == (D(0), D(5))
        assert cap_split(rule, D(150), D(5)) == (D(0), D(5))
        assert cap_split(Rule(model=M.INCLUDED), D(10**6), D(5)) == (D(5), D(0))


class TestMarginal:
    @pytest.mark.parametrize("rule", [GRADUATED, VOLUME, PACKAGE, PER_UNIT])
    def test_marginal_charges_of_a_period_add_up_to_its_charge(self, rule):
        events = [D(400), D(600), D(1), D("0.5"), D("8998.5"), D(1), D(2500), D(0)]
        used = D(0)
        total = D(0)
        for units in events:
            total += marginal_charge(rule, used, units)
            used += units
        assert used == D(12501)
        assert total == charge(rule, used)

    def test_marginal_at_a_graduated_boundary(self):
        assert marginal_charge(GRADUATED, D(999), D(1)) == 0  # 1,000th unit is free
        assert marginal_charge(GRADUATED, D(1000), D(1)) == D("5.002")  # enters tier 2
        assert marginal_charge(GRADUATED, D(1001), D(1)) == D("0.002")

    def test_marginal_volume_jump_can_be_negative(self):
        # Crossing into a cheaper volume tier lowers the period's total: a credit.
        assert marginal_charge(VOLUME, D(1000), D(1)) == D("40.03") - D(42)

    def test_marginal_package(self):
        assert marginal_charge(PACKAGE, D(999), D(1)) == 0
        assert marginal_charge(PACKAGE, D(1000), D(1)) == D(5)

    def test_marginal_with_a_daily_cap_window(self):
        rule = Rule(
            model=M.PER_UNIT, unit_price=D("0.01"), max_usage=D(100), overage_unit_price=D("0.1")
        )
        # 90 used today (500 within caps this period): 10 more within the cap, 10 beyond.
        assert marginal_charge(rule, D(500), D(20), window_used_before=D(90)) == D("1.1")
        hard = Rule(model=M.PER_UNIT, unit_price=D("0.01"), max_usage=D(100))
        assert marginal_charge(hard, D(500), D(20), window_used_before=D(90)) == D("0.1")

    def test_marginal_graduated_counts_tiers_over_the_period(self):
        rule = Rule(model=M.GRADUATED, tiers=GRADUATED.tiers, max_usage=D(50))
        # Daily cap of 50; the period already has 990 units within caps.
        # 20 units today after 40: 10 within (990→1000, free), 10 beyond (hard cap: 0).
        assert marginal_charge(rule, D(990), D(20), window_used_before=D(40)) == 0
        # The next day: 20 within; the period goes 1,000 → 1,020, entering tier 2:
        # 20 * 0.002 + 5.
        assert marginal_charge(rule, D(1000), D(20), window_used_before=D(0)) == D("5.04")


class TestValidation:
    def test_valid_rules_have_no_errors(self):
        for rule in (GRADUATED, VOLUME, PACKAGE, PER_UNIT, Rule(model=M.INCLUDED)):
            assert rule_errors(rule) == {}

    @pytest.mark.parametrize(
        ("rule", "field"),
        [
            (Rule(model="flat"), "model"),  # type: ignore[arg-type]
            (Rule(model=M.PER_UNIT), "pricePerUnit"),
            (Rule(model=M.PER_UNIT, unit_price=D(-1)), "pricePerUnit"),
            (Rule(model=M.PER_UNIT, unit_price=D("0.0000000000001")), "pricePerUnit"),
            (Rule(model=M.INCLUDED, unit_price=D(1)), "pricePerUnit"),
            (Rule(model=M.PACKAGE, unit_price=D(1)), "packageSize"),
            (Rule(model=M.PACKAGE, unit_price=D(1), package_size=0), "packageSize"),
            (Rule(model=M.PER_UNIT, unit_price=D(1), package_size=5), "packageSize"),
            (Rule(model=M.GRADUATED), "tiers"),
            (Rule(model=M.PER_UNIT, unit_price=D(1), tiers=(Tier(None, D(1)),)), "tiers"),
            (
                Rule(model=M.GRADUATED, tiers=(Tier(D(10), D(1)), Tier(D(10), D(1)))),
                "tiers.1.upTo",
            ),
            (
                Rule(model=M.VOLUME, tiers=(Tier(D(10), D(1)), Tier(D(5), D(1)), Tier(None, D(1)))),
                "tiers.1.upTo",
            ),
            (Rule(model=M.VOLUME, tiers=(Tier(None, D(1)), Tier(None, D(1)))), "tiers.0.upTo"),
            (Rule(model=M.VOLUME, tiers=(Tier(D(10), D(1)),)), "tiers.0.upTo"),
            (Rule(model=M.VOLUME, tiers=(Tier(D(0), D(1)), Tier(None, D(1)))), "tiers.0.upTo"),
            (Rule(model=M.GRADUATED, tiers=(Tier(None, D(-1)),)), "tiers.0.pricePerUnit"),
            (Rule(model=M.GRADUATED, tiers=(Tier(None, D(1), D(-5)),)), "tiers.0.flatFee"),
            (Rule(model=M.INCLUDED, max_usage=D(0)), "maxUsage"),
            (Rule(model=M.INCLUDED, overage_unit_price=D(1)), "overagePricePerUnit"),
            (
                Rule(model=M.INCLUDED, max_usage=D(1), overage_unit_price=D(-1)),
                "overagePricePerUnit",
            ),
            (Rule(model=M.PER_UNIT, unit_price=D(10**13)), "pricePerUnit"),
        ],
    )
    def test_bad_rules(self, rule, field):
        assert field in rule_errors(rule)

    def test_unvalidated_rule_is_not_silently_priced(self):
        with pytest.raises(ValueError, match="validate"):
            usage_charge(Rule(model=M.PER_UNIT), D(1))
        with pytest.raises(ValueError, match="last tier"):
            usage_charge(Rule(model=M.GRADUATED, tiers=(Tier(D(10), D(1)),)), D(11))
