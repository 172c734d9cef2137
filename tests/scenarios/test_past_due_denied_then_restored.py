"""A customer who does not pay: the in-advance invoice is due at once, past due once the
grace period (3 days, the default) has run out; the subscription becomes past due and the
entitlement check denies with reason ``past_due``; marking the invoice paid (through the
API) restores the subscription and the check allows again. The next period is billed as
usual. Every invoice is read back through the API to the cent.

The entitlement check is asked now (the wall clock); what it judges is the subscription's
status, which the billing task moved at the simulated instants.
"""

from __future__ import annotations

import pytest

from .helpers import ADVANCE, Life, per_unit, utc

pytestmark = pytest.mark.django_db


def test_past_due_then_paid(life: Life):
    starter = life.plan(
        "starter", price="49", timing=ADVANCE, features={"tokens": per_unit("0.002")}
    )
    subscription = life.subscribe(starter, at=utc(2026, 3, 1, 9))

    life.cycle(utc(2026, 3, 1, 10))
    (invoice,) = life.invoices()
    # March in advance: 49.00 -> 4900, due when issued
    assert life.bills() == [
        ("INV-TEST-000001", "IN_ADVANCE_INITIAL", "DUE", [("BASE", 4900)], 4900)
    ]
    assert (invoice["dueDate"], invoice["gracePeriodDays"]) == ("2026-03-01T10:00:00Z", 3)
    assert life.check()["allowed"] is True
    life.send((utc(2026, 3, 2), 1500))

    # One second before the grace period ends: still due, still allowed.
    life.cycle(utc(2026, 3, 4, 9, 59, 59))
    assert life.bills()[0][2] == "DUE"
    assert life.check()["allowed"] is True

    # Due date + 3 days: past due; the subscription with it; the check denies.
    life.cycle(utc(2026, 3, 4, 10))
    (invoice,) = life.invoices()
    assert (invoice["status"], invoice["pastDueAt"]) == ("PAST_DUE", "2026-03-04T10:00:00Z")
    assert life.subscription(subscription)["status"] == "past_due"
    denied = life.check()
    assert denied["allowed"] is False
    assert denied["reason"]["code"] == "past_due"

    # Paid on March 5th (POST .../mark-paid): active again, the check allows.
    paid = life.pay(invoice, at=utc(2026, 3, 5))
    assert (paid["status"], paid["paidAt"]) == ("PAID", "2026-03-05T00:00:00Z")
    assert paid["paymentReference"] == "wire-INV-TEST-000001"
    assert life.subscription(subscription)["status"] == "active"
    allowed = life.check()
    assert allowed["allowed"] is True and allowed["reason"] is None
    # A later run keeps it so.
    life.cycle(utc(2026, 3, 6))
    assert life.subscription(subscription)["status"] == "active"

    life.cycle(utc(2026, 4, 1, 0, 5))
    # April 4900; March's 1,500 tokens x 0.002 = 3.00 -> 300; total 5200
    assert life.bills() == [
        ("INV-TEST-000001", "IN_ADVANCE_INITIAL", "PAID", [("BASE", 4900)], 4900),
        ("INV-TEST-000002", "REGULAR", "DUE", [("BASE", 4900), ("USAGE", 300)], 5200),
    ]
    assert life.check()["allowed"] is True
