"""Annual plans: one billed in advance with a downgrade scheduled mid-year (it takes effect
at the year's end: the renewal is at the cheaper plan), one billed in arrears with an
upgrade mid-year (no adjustment invoice: the year's invoice splits the base fee by the
time each plan was in force).

Reading of the rules (docs/billing.md): a period's usage is priced by the rule of the last
plan of the period that prices the feature; a change scheduled for the period end is not
part of the period it ends. Every invoice is read back through the API to the cent.
"""

from __future__ import annotations

import pytest

from .helpers import ADVANCE, ARREARS, Life, per_unit, utc

pytestmark = pytest.mark.django_db


def test_annual_in_advance_with_a_downgrade_at_the_year_end(life: Life):
    enterprise = life.plan(
        "enterprise",
        price="1200",
        timing=ADVANCE,
        interval_months=12,
        features={"tokens": per_unit("0.001")},
    )
    business = life.plan(
        "business",
        price="600",
        timing=ADVANCE,
        interval_months=12,
        features={"tokens": per_unit("0.002")},
    )
    subscription = life.subscribe(enterprise, at=utc(2025, 1, 15, 9))

    life.cycle(utc(2025, 1, 15, 10))
    (first,) = life.invoices()
    assert (first["invoicePeriodStart"], first["invoicePeriodEnd"]) == (
        "2025-01-15T00:00:00Z",
        "2026-01-15T00:00:00Z",
    )
    # The year's base fee at its start: 1,200.00 -> 120000
    assert life.bills() == [
        ("INV-TEST-000001", "IN_ADVANCE_INITIAL", "DUE", [("BASE", 120000)], 120000)
    ]
    life.pay(first, at=utc(2025, 1, 20))

    life.send((utc(2025, 2, 1), 100000), (utc(2025, 7, 1), 100000), (utc(2025, 12, 31, 23), 50000))
    life.cycle(utc(2025, 7, 1, 12))
    assert len(life.invoices()) == 1  # nothing mid-year

    # September 10th: a cheaper plan, so a downgrade, scheduled for the year's end.
    change = life.change_plan(subscription, business, at=utc(2025, 9, 10))
    assert change.effective_at == utc(2026, 1, 15)
    scheduled = life.subscription(subscription)["scheduledChange"]
    assert (scheduled["toPlanKey"], scheduled["effectiveAt"]) == (
        "business",
        "2026-01-15T00:00:00Z",
    )
    life.cycle(utc(2025, 9, 10, 0, 5))
    assert len(life.invoices()) == 1  # a downgrade is not prorated

    life.cycle(utc(2026, 1, 15, 0, 5))
    renewal = life.invoices()[1]
    # 2026's base fee at the business price: 600.00 -> 60000
    # 2025's usage, 250,000 tokens, all under enterprise: x 0.001 = 250.00 -> 25000
    # total 60000 + 25000 = 85000
    assert life.bills()[1] == (
        "INV-TEST-000002",
        "REGULAR",
        "DUE",
        [("BASE", 60000), ("USAGE", 25000)],
        85000,
    )
    assert renewal["items"][0]["planId"] == str(business.pk)
    assert renewal["items"][0]["periodStart"] == "2026-01-15T00:00:00Z"
    assert (renewal["items"][1]["periodStart"], renewal["items"][1]["quantity"]) == (
        "2025-01-15T00:00:00Z",
        "250000",
    )
    assert life.subscription(subscription)["planKey"] == "business"
    life.pay(renewal, at=utc(2026, 1, 16))

    life.send((utc(2026, 3, 1), 100000))
    life.cycle(utc(2027, 1, 15, 0, 5))
    # 2027's base fee 60000; 2026's usage 100,000 x 0.002 (business) = 200.00 -> 20000
    # total 80000
    assert life.bills() == [
        ("INV-TEST-000001", "IN_ADVANCE_INITIAL", "PAID", [("BASE", 120000)], 120000),
        ("INV-TEST-000002", "REGULAR", "PAID", [("BASE", 60000), ("USAGE", 25000)], 85000),
        ("INV-TEST-000003", "REGULAR", "DUE", [("BASE", 60000), ("USAGE", 20000)], 80000),
    ]


def test_annual_in_arrears_with_an_upgrade_mid_year(life: Life):
    small = life.plan(
        "small",
        price="365",
        timing=ARREARS,
        interval_months=12,
        features={"tokens": per_unit("0.001")},
    )
    large = life.plan(
        "large",
        price="730",
        timing=ARREARS,
        interval_months=12,
        features={"tokens": per_unit("0.0005")},
    )
    subscription = life.subscribe(small, at=utc(2025, 6, 1, 9))
    life.cycle(utc(2025, 6, 1, 10))
    assert life.invoices() == []  # in arrears: nothing at the start

    life.send((utc(2025, 7, 1), 300000))
    # December 1st 00:00: a dearer plan, so an upgrade, at once.
    change = life.change_plan(subscription, large, at=utc(2025, 12, 1))
    assert change.effective_at == utc(2025, 12, 1)
    life.cycle(utc(2025, 12, 1, 0, 5))
    assert life.invoices() == []  # in arrears there is no adjustment invoice
    life.send((utc(2026, 2, 1), 200000))

    life.cycle(utc(2026, 6, 1, 0, 5))
    (year,) = life.invoices()
    assert (year["invoicePeriodStart"], year["invoicePeriodEnd"]) == (
        "2025-06-01T00:00:00Z",
        "2026-06-01T00:00:00Z",
    )
    # The year has 365 days: 183 on small (Jun 1 - Dec 1: 30+31+31+30+31+30), 182 on large.
    # base small 365 x 183/365 = 183.00 -> 18300
    # base large 730 x 182/365 = 364.00 -> 36400
    # tokens 500,000 at the rule of the year's last plan (large): x 0.0005 = 250.00 -> 25000
    # total 18300 + 36400 + 25000 = 79700
    assert life.bills() == [
        (
            "INV-TEST-000001",
            "REGULAR",
            "DUE",
            [("BASE", 18300), ("BASE", 36400), ("USAGE", 25000)],
            79700,
        )
    ]
    small_base, large_base = year["items"][:2]
    assert (small_base["planId"], small_base["periodEnd"]) == (
        str(small.pk),
        "2025-12-01T00:00:00Z",
    )
    assert (large_base["planId"], large_base["periodStart"]) == (
        str(large.pk),
        "2025-12-01T00:00:00Z",
    )
    assert small_base["exactAmount"] == "183"
    assert large_base["exactAmount"] == "364"
