"""What a Stripe price charges per interval, the periods and proration of an imported
subscription, and the exact split of rounded amounts: pure functions, hand-computed."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, localcontext

import pytest

from apps.stripe_import.amounts import PriceError, PriceTerms
from apps.stripe_import.revenue import Schedule, split_exactly

UTC = dt.UTC


def price(**fields: object) -> PriceTerms:
    return PriceTerms.of(
        {"id": "price_1", "object": "price", "currency": "usd", "recurring": {"interval": "month"}}
        | fields
    )


class TestPrices:
    def test_per_unit_and_decimal_amounts(self) -> None:
        assert price(unit_amount=3000).major_amount(2) == Decimal("60")
        # 1234.5678 cents x 3 = 3703.7034 cents.
        assert price(unit_amount_decimal="1234.5678").major_amount(3) == Decimal("37.037034")
        # JPY has no minor unit.
        assert price(unit_amount=500, currency="jpy").major_amount(2) == Decimal("1000")

    def test_legacy_plans(self) -> None:
        plan = PriceTerms.of(
            {
                "id": "plan_1",
                "object": "plan",
                "amount": 1999,
                "currency": "eur",
                "interval": "year",
                "interval_count": 2,
            }
        )
        assert (plan.interval, plan.interval_count, plan.currency) == ("year", 2, "EUR")
        assert plan.major_amount(1) == Decimal("19.99")

    def test_tiers(self) -> None:
        tiers = [
            {"up_to": 5, "unit_amount": 1000, "flat_amount": 500},
            {"up_to": None, "unit_amount_decimal": "750.5"},
        ]
        # Graduated, 7: 5 x 1000 + 500 + 2 x 750.5 = 7001 cents.
        assert price(billing_scheme="tiered", tiers_mode="graduated", tiers=tiers).major_amount(
            7
        ) == Decimal("70.01")
        # Volume, 7: every unit at the second tier: 7 x 750.5 = 5253.5 cents.
        assert price(billing_scheme="tiered", tiers_mode="volume", tiers=tiers).major_amount(
            7
        ) == Decimal("52.535")
        # Volume, 3: the first tier: 3 x 1000 + 500.
        assert price(billing_scheme="tiered", tiers_mode="volume", tiers=tiers).major_amount(
            3
        ) == Decimal("35")

    def test_packages(self) -> None:
        up = price(unit_amount=2500, transform_quantity={"divide_by": 10, "round": "up"})
        down = price(unit_amount=2500, transform_quantity={"divide_by": 10, "round": "down"})
        assert up.major_amount(11) == Decimal("50")  # 2 packages
        assert down.major_amount(11) == Decimal("25")

    def test_metered_and_one_time_prices_are_not_recurring_licensed(self) -> None:
        assert not price(
            recurring={"interval": "month", "usage_type": "metered"}
        ).is_recurring_licensed
        assert not price(recurring=None, type="one_time").is_recurring_licensed

    @pytest.mark.parametrize(
        "fields",
        [
            {"currency": ""},
            {"recurring": {"interval": "fortnight"}},
            {"recurring": {"interval": "month", "interval_count": 0}},
            {"billing_scheme": "tiered", "tiers_mode": "graduated", "tiers": None},
            {"unit_amount_decimal": "-1"},
            {"unit_amount_decimal": "abc"},
        ],
    )
    def test_prices_that_cannot_be_read(self, fields: dict) -> None:
        with pytest.raises(PriceError):
            price(**fields).major_amount(1)


def monthly(amount: str, anchor: dt.datetime, **fields: object) -> Schedule:
    return Schedule(
        amount=Decimal(amount),
        interval=str(fields.get("interval", "month")),
        interval_count=int(fields.get("interval_count", 1)),  # type: ignore[call-overload]
        anchor=anchor,
        earns_from=fields.get("earns_from", anchor),  # type: ignore[arg-type]
        earns_until=fields.get("earns_until"),  # type: ignore[arg-type]
    )


class TestSchedule:
    def test_periods_keep_the_anchor_day_both_ways(self) -> None:
        s = monthly("30", dt.datetime(2026, 1, 31, 12, tzinfo=UTC))
        assert [s.period_start(n).date() for n in (-2, -1, 0, 1, 2)] == [
            dt.date(2025, 11, 30),
            dt.date(2025, 12, 31),
            dt.date(2026, 1, 31),
            dt.date(2026, 2, 28),
            dt.date(2026, 3, 31),
        ]
        assert s.period_number_at(dt.datetime(2026, 3, 1, tzinfo=UTC)) == 1
        assert s.period_number_at(dt.datetime(2025, 12, 31, 11, tzinfo=UTC)) == -2

    def test_proration_over_two_periods(self) -> None:
        s = monthly("60", dt.datetime(2026, 9, 15, tzinfo=UTC))
        pieces = list(
            s.pieces(dt.datetime(2026, 10, 1, tzinfo=UTC), dt.datetime(2026, 11, 1, tzinfo=UTC))
        )
        assert [(lo.day, hi.day) for lo, hi, _ in pieces] == [(1, 15), (15, 1)]
        assert pieces[0][2] == Decimal(28)  # 14 / 30 of 60
        with localcontext(prec=100):
            assert pieces[1][2] == Decimal(60) * 17 / 31  # 17 / 31 of 60, to 100 digits

    def test_earning_span_and_weeks(self) -> None:
        s = monthly(
            "70",
            dt.datetime(2026, 10, 5, tzinfo=UTC),  # a Monday
            interval="week",
            interval_count=2,
            earns_from=dt.datetime(2026, 10, 12, tzinfo=UTC),  # after a week's trial
            earns_until=dt.datetime(2026, 10, 26, tzinfo=UTC),
        )
        pieces = list(
            s.pieces(dt.datetime(2026, 10, 1, tzinfo=UTC), dt.datetime(2026, 11, 1, tzinfo=UTC))
        )
        # Oct 12 - Oct 19 (half of the first fortnight), Oct 19 - Oct 26 (half the next).
        assert [(lo.day, hi.day, amount) for lo, hi, amount in pieces] == [
            (12, 19, Decimal(35)),
            (19, 26, Decimal(35)),
        ]
        assert list(s.pieces(s.anchor, s.earns_from)) == []


class TestSplitExactly:
    def test_parts_add_up_to_the_rounded_whole(self) -> None:
        third = Decimal(10) / 3
        parts = split_exactly(Decimal("10.000000000000"), {"a": third, "b": third, "c": third})
        assert sorted(parts.values()) == [
            Decimal("3.333333333333"),
            Decimal("3.333333333333"),
            Decimal("3.333333333334"),
        ]
        assert sum(parts.values()) == Decimal(10)

    def test_scaled_to_the_whole(self) -> None:
        parts = split_exactly(Decimal("1.000000000001"), {"a": Decimal("0.5"), "b": Decimal("0.5")})
        assert sum(parts.values()) == Decimal("1.000000000001")
        assert split_exactly(Decimal(0), {"a": Decimal(0)}) == {"a": Decimal(0)}
