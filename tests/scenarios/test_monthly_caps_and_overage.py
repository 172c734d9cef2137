"""A monthly plan billed in arrears with two capped features:

* ``tokens``: $0.01 per unit up to 1,000 per period, then $0.02 per unit (a cap with an
  overage price);
* ``images``: included up to 50 per period, no overage price (a hard cap).

Events beyond a cap are stored with their real usage and answered
``usageLimitExceeded: true`` (PRODUCT.md §3.7, issue 4). Reading of "hard cap: still billed
as overage per rule": the invoice lists the units beyond each cap on an ``OVERAGE`` line
under the feature's usage line, priced by the rule: at the overage price, or at 0 ("not
billed") when the rule has none. Every invoice is read back through the API to the cent.
"""

from __future__ import annotations

import pytest

from .helpers import ARREARS, Life, rule, utc

pytestmark = pytest.mark.django_db


def test_two_months_of_capped_usage(life: Life):
    metered = life.plan(
        "metered",
        price="10",
        timing=ARREARS,
        features={
            "tokens": rule("per_unit", price="0.01", cap="1000", overage="0.02"),
            "images": rule("included", cap="50"),
        },
    )
    life.subscribe(metered, at=utc(2026, 3, 1, 9))

    # March: 700 + 800 tokens (the second event crosses the cap by 500).
    within, over = life.send((utc(2026, 3, 2), 700), (utc(2026, 3, 20), 800))
    assert "usageLimitExceeded" not in within
    assert over["usageLimitExceeded"] is True
    assert (over["overageUnits"], over["overageBilled"]) == ("500", True)
    # 40 + 30 images: the second crosses the hard cap by 20, stored all the same.
    below, beyond = life.send((utc(2026, 3, 3), 40), (utc(2026, 3, 21), 30), feature="images")
    assert "usageLimitExceeded" not in below
    assert beyond["usageLimitExceeded"] is True
    assert (beyond["overageUnits"], beyond["overageBilled"]) == ("20", False)
    assert beyond["status"] == "accepted"  # stored; its 30 units are all on the invoice below

    life.cycle(utc(2026, 4, 1, 0, 5))
    (march,) = life.invoices()
    # base 10.00 -> 1000
    # images: 50 within the cap, included -> 0; 20 beyond, no overage price -> 0 (not billed)
    # tokens: 1,000 within x 0.01 = 10.00 -> 1000; 500 beyond x 0.02 = 10.00 -> 1000
    # total 1000 + 0 + 0 + 1000 + 1000 = 3000
    assert life.bills() == [
        (
            "INV-TEST-000001",
            "REGULAR",
            "DUE",
            [("BASE", 1000), ("USAGE", 0), ("OVERAGE", 0), ("USAGE", 1000), ("OVERAGE", 1000)],
            3000,
        )
    ]
    _base, images, images_over, tokens, tokens_over = march["items"]
    assert (images["featureKey"], images["quantity"]) == ("images", "50")
    assert (images_over["featureKey"], images_over["quantity"]) == ("images", "20")
    assert images_over["description"] == "images: 20 units beyond the cap of 50 (not billed)"
    assert (tokens["quantity"], tokens_over["quantity"]) == ("1000", "500")
    assert tokens_over["description"] == "tokens: 500 units beyond the cap of 1,000 at $0.02"
    life.pay(march, at=utc(2026, 4, 2))

    # April: the cap resets with the period; exactly at the caps is not beyond them.
    answers = life.send((utc(2026, 4, 5), 600), (utc(2026, 4, 25), 400))
    answers += life.send((utc(2026, 4, 6), 50), feature="images")
    assert not any("usageLimitExceeded" in answer for answer in answers)
    life.cycle(utc(2026, 5, 1, 0, 5))
    # base 1000; images 50 included -> 0; tokens 1,000 x 0.01 = 10.00 -> 1000; total 2000
    assert life.bills()[1] == (
        "INV-TEST-000002",
        "REGULAR",
        "DUE",
        [("BASE", 1000), ("USAGE", 0), ("USAGE", 1000)],
        2000,
    )
