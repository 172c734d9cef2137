"""A monthly plan billed in advance: the base fee at each period's start, and the usage of
the period that just ended on the same invoice (priced on that period's total): a volume
feature (every unit at the price of the tier the total falls in, plus that tier's flat
fee), a package feature (whole blocks of the total) and an included feature (listed at 0).

Every invoice is read back through the API and checked to the cent.
"""

from __future__ import annotations

import pytest

from .helpers import ADVANCE, Life, rule, tiers, utc

pytestmark = pytest.mark.django_db

# images: total <= 100 at $0.10; <= 1,000 at $0.05 + $2 flat; beyond at $0.01 (every unit).
VOLUME = rule("volume", tiers_=tiers(("100", "0.10"), ("1000", "0.05", "2"), (None, "0.01")))
# exports: $5 per started block of 100.
PACKAGE = rule("package", price="5", package=100)


def test_four_months_in_advance(life: Life):
    team = life.plan(
        "team",
        price="49",
        timing=ADVANCE,
        features={"images": VOLUME, "exports": PACKAGE, "support": rule("included")},
    )
    subscription = life.subscribe(team, at=utc(2026, 3, 1, 9))

    life.cycle(utc(2026, 3, 1, 10))
    (initial,) = life.invoices()
    assert (initial["invoicePeriodStart"], initial["invoicePeriodEnd"]) == (
        "2026-03-01T00:00:00Z",
        "2026-04-01T00:00:00Z",
    )
    # March's base fee at its start: 49.00 -> 4900
    assert life.bills() == [
        ("INV-TEST-000001", "IN_ADVANCE_INITIAL", "DUE", [("BASE", 4900)], 4900)
    ]
    life.pay(initial, at=utc(2026, 3, 2))

    # March: 101 images, 101 exports, 7 support requests, each total in two or more events.
    life.send((utc(2026, 3, 4), 60), (utc(2026, 3, 18), 41), feature="images")
    life.send((utc(2026, 3, 5), 50), (utc(2026, 3, 25), 51), feature="exports")
    life.send((utc(2026, 3, 6), 3), (utc(2026, 3, 7), 4), feature="support")
    life.cycle(utc(2026, 4, 1, 0, 5))
    april = life.invoices()[1]
    # April's base fee 4900, then March's usage, features in key order:
    # exports 101 -> 2 blocks x 5 = 10.00 -> 1000 (per event: 1 + 1 block, the same here)
    # images 101 -> second tier: 101 x 0.05 + 2 = 7.05 -> 705 (100 would have cost 10.00)
    # support 7 -> included: 0
    # total 4900 + 1000 + 705 + 0 = 6605
    assert life.bills()[1] == (
        "INV-TEST-000002",
        "REGULAR",
        "DUE",
        [("BASE", 4900), ("USAGE", 1000), ("USAGE", 705), ("USAGE", 0)],
        6605,
    )
    assert [(i["featureKey"], i["quantity"]) for i in april["items"][1:]] == [
        ("exports", "101"),
        ("images", "101"),
        ("support", "7"),
    ]
    assert all(i["periodStart"] == "2026-03-01T00:00:00Z" for i in april["items"][1:])
    assert april["items"][0]["periodStart"] == "2026-04-01T00:00:00Z"
    life.pay(april, at=utc(2026, 4, 2))

    # April: 1,001 images (third tier), exactly one block of exports.
    life.send((utc(2026, 4, 3), 500), (utc(2026, 4, 20), 501), feature="images")
    life.send((utc(2026, 4, 10), 100), feature="exports")
    life.cycle(utc(2026, 5, 1, 0, 5))
    may = life.invoices()[2]
    # base 4900
    # exports 100 -> 1 block -> 500
    # images 1,001 -> all at 0.01 = 10.01 -> 1001 (no flat fee on that tier)
    # total 4900 + 500 + 1001 = 6401
    assert life.bills()[2] == (
        "INV-TEST-000003",
        "REGULAR",
        "DUE",
        [("BASE", 4900), ("USAGE", 500), ("USAGE", 1001)],
        6401,
    )
    life.pay(may, at=utc(2026, 5, 2))

    # May: exactly 100 images (the first tier's upTo stays in the first tier).
    life.send((utc(2026, 5, 8), 100), feature="images")
    life.cycle(utc(2026, 6, 1, 0, 5))
    # base 4900; images 100 x 0.10 = 10.00 -> 1000; total 5900
    assert life.bills() == [
        ("INV-TEST-000001", "IN_ADVANCE_INITIAL", "PAID", [("BASE", 4900)], 4900),
        (
            "INV-TEST-000002",
            "REGULAR",
            "PAID",
            [("BASE", 4900), ("USAGE", 1000), ("USAGE", 705), ("USAGE", 0)],
            6605,
        ),
        (
            "INV-TEST-000003",
            "REGULAR",
            "PAID",
            [("BASE", 4900), ("USAGE", 500), ("USAGE", 1001)],
            6401,
        ),
        ("INV-TEST-000004", "REGULAR", "DUE", [("BASE", 4900), ("USAGE", 1000)], 5900),
    ]
    assert life.subscription(subscription)["currentPeriodStart"] == "2026-06-01T00:00:00Z"
