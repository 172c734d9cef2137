"""A monthly plan billed in arrears: a base fee, a graduated feature (a free tier, a tier
with a flat fee, a cheaper tier) and a per-unit feature, three months of usage, and late
events of March that arrive after March's invoice was issued.

Every invoice is read back through the API and checked to the cent. Reading of the
rules: usage is priced on the period's total (tiers fill on the total, never per event);
each line is rounded once (half to even) and the total is the sum of the rounded lines;
late usage lands on the next invoice as a ``LATE_USAGE`` line for what the period's usage
costs now less what was billed, described as an adjustment for late usage.
"""

from __future__ import annotations

import pytest

from .helpers import ARREARS, Life, per_unit, rule, tiers, utc

pytestmark = pytest.mark.django_db

# tokens: (0, 1,000] free; (1,000, 10,000] at $0.002 + $5 flat when entered; beyond at $0.001.
GRADUATED = rule("graduated", tiers_=tiers(("1000", "0"), ("10000", "0.002", "5"), (None, "0.001")))


def test_three_months_in_arrears_with_late_march_usage(life: Life):
    growth = life.plan(
        "growth",
        price="29",
        timing=ARREARS,
        features={"tokens": GRADUATED, "searches": per_unit("0.015")},
    )
    subscription = life.subscribe(growth, at=utc(2026, 3, 1, 9))

    # March: 12,500 tokens in three events, 333 searches.
    life.send((utc(2026, 3, 3, 10), 4000), (utc(2026, 3, 12, 15), 3000), (utc(2026, 3, 28), 5500))
    life.send((utc(2026, 3, 9, 8), 333), feature="searches")
    life.cycle(utc(2026, 3, 15))
    assert life.invoices() == []  # in arrears: nothing before the period ends

    life.cycle(utc(2026, 4, 1, 0, 5))
    (march,) = life.invoices()
    assert (march["invoicePeriodStart"], march["invoicePeriodEnd"]) == (
        "2026-03-01T00:00:00Z",
        "2026-04-01T00:00:00Z",
    )
    # base 29.00 -> 2900
    # searches 333 x 0.015 = 4.995 -> 499.5 cents, half to even -> 500
    # tokens on the total 12,500: 1,000 x 0 + 9,000 x 0.002 + 5 + 2,500 x 0.001 = 25.50 -> 2550
    #   (per event it would be 11 + 9 + 14 = 34: the total is what counts)
    # total 2900 + 500 + 2550 = 5950
    assert life.bills() == [
        (
            "INV-TEST-000001",
            "REGULAR",
            "DUE",
            [("BASE", 2900), ("USAGE", 500), ("USAGE", 2550)],
            5950,
        )
    ]
    searches, tokens = march["items"][1:]
    assert (searches["featureKey"], searches["quantity"], searches["exactAmount"]) == (
        "searches",
        "333",
        "4.995",
    )
    assert (tokens["featureKey"], tokens["quantity"], tokens["exactAmount"]) == (
        "tokens",
        "12500",
        "25.5",
    )
    life.pay(march, at=utc(2026, 4, 2))

    # April: 800 tokens (all in the free tier), no searches ...
    life.send((utc(2026, 4, 7), 800))
    # ... and, on April 10th, March events that were late: 600 tokens, 67 searches.
    life.send((utc(2026, 3, 31, 23, 30), 600))
    life.send((utc(2026, 3, 31, 22), 67), feature="searches")

    life.cycle(utc(2026, 5, 1, 0, 5))
    _, april = life.invoices()
    # base 2900
    # tokens April: 800 in the free tier -> 0 (listed: there was usage)
    # late searches, March now 400 x 0.015 = 6.00; billed 4.995 -> +1.005 -> half to even 100
    #   (500 + 100 = 600: March's searches now cost 6.00 in all)
    # late tokens, March now 13,100: 18 + 5 + 3,100 x 0.001 = 26.10; billed 25.50 -> +0.60 -> 60
    # (late lines in feature-key order, like the usage lines)
    # total 2900 + 0 + 100 + 60 = 3060
    assert life.bills()[1] == (
        "INV-TEST-000002",
        "REGULAR",
        "DUE",
        [("BASE", 2900), ("USAGE", 0), ("LATE_USAGE", 100), ("LATE_USAGE", 60)],
        3060,
    )
    late = {item["featureKey"]: item for item in april["items"] if item["kind"] == "LATE_USAGE"}
    assert late["tokens"]["description"] == (
        "Adjustment for late usage: tokens, Mar 1, 2026 \u2013 Apr 1, 2026: "
        "+600 units (billed 12,500, now 13,100)"
    )
    assert (late["tokens"]["periodStart"], late["tokens"]["periodEnd"]) == (
        "2026-03-01T00:00:00Z",
        "2026-04-01T00:00:00Z",
    )
    assert (late["tokens"]["quantity"], late["tokens"]["exactAmount"]) == ("600", "0.6")
    assert late["searches"]["exactAmount"] == "1.005"
    assert late["searches"]["description"].startswith("Adjustment for late usage: searches")
    life.pay(april, at=utc(2026, 5, 2))

    # May: 20,000 tokens, 1,000 searches.
    life.send((utc(2026, 5, 15), 20000))
    life.send((utc(2026, 5, 20), 1000), feature="searches")
    life.cycle(utc(2026, 6, 1, 0, 5))
    # base 2900
    # searches 1,000 x 0.015 = 15.00 -> 1500
    # tokens 20,000: 18 + 5 + 10,000 x 0.001 = 33.00 -> 3300
    # no late usage again: March's adjustment was told once
    # total 2900 + 1500 + 3300 = 7700
    assert life.bills() == [
        (
            "INV-TEST-000001",
            "REGULAR",
            "PAID",
            [("BASE", 2900), ("USAGE", 500), ("USAGE", 2550)],
            5950,
        ),
        (
            "INV-TEST-000002",
            "REGULAR",
            "PAID",
            [("BASE", 2900), ("USAGE", 0), ("LATE_USAGE", 100), ("LATE_USAGE", 60)],
            3060,
        ),
        (
            "INV-TEST-000003",
            "REGULAR",
            "DUE",
            [("BASE", 2900), ("USAGE", 1500), ("USAGE", 3300)],
            7700,
        ),
    ]
    assert life.subscription(subscription)["status"] == "active"

    # Running the task again at the same instant changes nothing.
    again = life.cycle(utc(2026, 6, 1, 0, 5))
    assert again["closed"]["invoices"] == 0
    assert len(life.invoices()) == 3


def test_a_late_event_after_the_last_invoice_of_an_ended_subscription(life: Life):
    """An ended subscription has no next invoice: usage arriving after its last invoice is
    billed on a late-usage invoice of its own (type ADJUSTMENT, reason ``late_usage``),
    once, however often the task runs."""
    metered = life.plan(
        "metered", price="30", timing=ARREARS, features={"tokens": per_unit("0.01")}
    )
    subscription = life.subscribe(metered, at=utc(2026, 3, 1, 9))
    life.send((utc(2026, 3, 5), 100))
    life.cancel_now(subscription, at=utc(2026, 3, 11))
    life.cycle(utc(2026, 3, 11, 0, 5))
    # Mar 1-11: base 30 x 10/31 = 9.677... -> 968; 100 x 0.01 = 1.00 -> 100; total 1068
    assert life.bills() == [
        ("INV-TEST-000001", "REGULAR", "DUE", [("BASE", 968), ("USAGE", 100)], 1068)
    ]

    life.send((utc(2026, 3, 6), 50))  # arrives after the last invoice
    result = life.cycle(utc(2026, 4, 1, 0, 5))
    assert result["late_usage"] == {"subscriptions": 1, "invoices": 1, "late_usage_lines": 1}
    # The 50 late units, 50 x 0.01 = 0.50 -> 50, on an invoice of their own.
    late = life.invoices()[1]
    assert life.bills()[1] == ("INV-TEST-000002", "ADJUSTMENT", "DUE", [("LATE_USAGE", 50)], 50)
    assert late["reason"] == "late_usage"
    # Dated the UTC day it was issued (one late-usage invoice per subscription and day).
    assert (late["invoicePeriodStart"], late["invoicePeriodEnd"]) == (
        "2026-04-01T00:00:00Z",
        "2026-04-01T00:00:00Z",
    )
    (item,) = late["items"]
    # The line is stated as late usage of the period it belongs to: Mar 1 - Mar 11.
    assert item["description"] == (
        "Adjustment for late usage: tokens, Mar 1, 2026 \u2013 Mar 11, 2026: "
        "+50 units (billed 100, now 150)"
    )
    assert (item["periodStart"], item["periodEnd"]) == (
        "2026-03-01T00:00:00Z",
        "2026-03-11T00:00:00Z",
    )

    # Told once: the same run again, and the next days' runs, issue nothing more.
    again = life.cycle(utc(2026, 4, 1, 0, 10))
    assert again["late_usage"]["invoices"] == 0
    assert life.cycle(utc(2026, 4, 2, 0, 5))["late_usage"] == {
        "subscriptions": 1,
        "invoices": 0,
        "late_usage_lines": 0,
    }
    assert len(life.invoices()) == 2
