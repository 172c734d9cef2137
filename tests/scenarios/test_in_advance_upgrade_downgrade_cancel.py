"""A monthly plan billed in advance through every kind of change: an upgrade in the middle
of March (a prorated adjustment invoice), a downgrade asked for in April (it waits for the
period end: May is billed at the cheaper plan), and an immediate cancellation in May (a
credit note for the unused part of May's base fee, and a final invoice for May's usage).

Readings (docs/billing.md): the prorated share is ``(period end - change) / period
length``, exact, and each line is rounded once; a period's usage is priced by the rule of
the last plan of the period that prices the feature (March's usage at the upgraded plan's
rule); a change scheduled for the period end is not part of that period. Every invoice is
read back through the API to the cent.
"""

from __future__ import annotations

import pytest

from .helpers import ADVANCE, Life, per_unit, utc

pytestmark = pytest.mark.django_db


def test_upgrade_downgrade_and_cancel(life: Life):
    basic = life.plan("basic", price="30", timing=ADVANCE, features={"tokens": per_unit("0.002")})
    pro = life.plan("pro", price="90", timing=ADVANCE, features={"tokens": per_unit("0.001")})
    subscription = life.subscribe(basic, at=utc(2026, 3, 1, 9))

    life.cycle(utc(2026, 3, 1, 10))
    # March at basic, in advance: 30.00 -> 3000
    assert life.bills() == [
        ("INV-TEST-000001", "IN_ADVANCE_INITIAL", "DUE", [("BASE", 3000)], 3000)
    ]
    life.pay(life.invoices()[0], at=utc(2026, 3, 2))
    life.send((utc(2026, 3, 5), 5000))

    # March 11th 00:00: upgrade to pro, at once. 21 of March's 31 days remain.
    change = life.change_plan(subscription, pro, at=utc(2026, 3, 11))
    assert change.effective_at == utc(2026, 3, 11)
    life.cycle(utc(2026, 3, 11, 0, 5))
    adjustment = life.invoices()[1]
    # credit from basic: -30 x 21/31 = -20.3225806... -> -2032
    # pro for the rest:   90 x 21/31 =  60.9677419... ->  6097
    # total -2032 + 6097 = 4065 (the rounded lines added; 60 x 21/31 = 40.645... would be 4065 too)
    assert life.bills()[1] == (
        "INV-TEST-000002",
        "ADJUSTMENT",
        "DUE",
        [("PRORATION", -2032), ("PRORATION", 6097)],
        4065,
    )
    assert adjustment["reason"] == "plan_change"
    assert adjustment["planChangeId"] == str(change.pk)
    assert (adjustment["invoicePeriodStart"], adjustment["invoicePeriodEnd"]) == (
        "2026-03-11T00:00:00Z",
        "2026-04-01T00:00:00Z",
    )
    credit, charge = adjustment["items"]
    assert credit["description"].startswith("Credit from old plan: Basic")
    assert credit["exactAmount"].startswith("-20.322580645161290322580645")
    assert charge["exactAmount"].startswith("60.967741935483870967741935")
    life.pay(adjustment, at=utc(2026, 3, 12))
    life.send((utc(2026, 3, 20), 5000))

    life.cycle(utc(2026, 4, 1, 0, 5))
    # April at pro: 9000
    # March's 10,000 tokens at the rule of March's last plan (pro): x 0.001 = 10.00 -> 1000
    # total 10000
    assert life.bills()[2] == (
        "INV-TEST-000003",
        "REGULAR",
        "DUE",
        [("BASE", 9000), ("USAGE", 1000)],
        10000,
    )
    life.pay(life.invoices()[2], at=utc(2026, 4, 2))

    # April 15th: back to basic, which is cheaper: scheduled for May 1st.
    downgrade = life.change_plan(subscription, basic, at=utc(2026, 4, 15))
    assert downgrade.effective_at == utc(2026, 5, 1)
    life.cycle(utc(2026, 4, 15, 0, 5))
    assert len(life.invoices()) == 3  # no proration for a downgrade
    life.send((utc(2026, 4, 20), 2000))

    life.cycle(utc(2026, 5, 1, 0, 5))
    # May at basic: 3000
    # April's 2,000 tokens, all April at pro (the downgrade starts May): x 0.001 = 2.00 -> 200
    # total 3200
    assert life.bills()[3] == (
        "INV-TEST-000004",
        "REGULAR",
        "DUE",
        [("BASE", 3000), ("USAGE", 200)],
        3200,
    )
    assert life.subscription(subscription)["planKey"] == "basic"
    life.pay(life.invoices()[3], at=utc(2026, 5, 2))
    life.send((utc(2026, 5, 5), 1000))

    # May 11th 00:00: cancelled at once. 21 of May's 31 days unused.
    life.cancel_now(subscription, at=utc(2026, 5, 11))
    life.cycle(utc(2026, 5, 11, 0, 5))
    note, final = life.invoices()[4:]
    # credit note: -30 x 21/31 = -20.3225806... -> -2032, paid at once (nothing to collect)
    # final invoice: May 1-11 usage, 1,000 tokens at basic x 0.002 = 2.00 -> 200
    assert life.bills() == [
        ("INV-TEST-000001", "IN_ADVANCE_INITIAL", "PAID", [("BASE", 3000)], 3000),
        (
            "INV-TEST-000002",
            "ADJUSTMENT",
            "PAID",
            [("PRORATION", -2032), ("PRORATION", 6097)],
            4065,
        ),
        ("INV-TEST-000003", "REGULAR", "PAID", [("BASE", 9000), ("USAGE", 1000)], 10000),
        ("INV-TEST-000004", "REGULAR", "PAID", [("BASE", 3000), ("USAGE", 200)], 3200),
        ("INV-TEST-000005", "CREDIT", "PAID", [("CANCELLATION", -2032)], -2032),
        ("INV-TEST-000006", "REGULAR", "DUE", [("USAGE", 200)], 200),
    ]
    assert (note["reason"], note["creditedInvoiceId"]) == ("cancellation", life.invoices()[3]["id"])
    assert (note["invoicePeriodStart"], note["invoicePeriodEnd"]) == (
        "2026-05-11T00:00:00Z",
        "2026-06-01T00:00:00Z",
    )
    assert final["reason"] == "final"
    usage = final["items"][0]
    assert (usage["periodStart"], usage["periodEnd"]) == (
        "2026-05-01T00:00:00Z",
        "2026-05-11T00:00:00Z",
    )
    assert life.subscription(subscription)["status"] == "cancelled"

    # Nothing after the end: no June invoice, no second credit note.
    life.cycle(utc(2026, 6, 1, 0, 5))
    assert len(life.invoices()) == 6
