"""A plan with credit-backed features: each period grants the plan's credits, usage spends
them at ingestion, each invoice gives a credit-backed feature's charge back on a
``CREDITS`` line (net zero), and at each period start the last period's credits roll over:

* ``chat`` draws ``CHAT`` credits (1 per unit), rollover ``full``;
* ``images`` draws ``IMG`` credits (2 per unit), rollover ``capped`` at 500 with grants
  expiring 2 months after they start: what the cap does not keep expires.

Why this life runs on the wall clock: the credits app settles pools (rollover, expiry) as
of the current time (``timezone.now()``), and events may not be dated in the future. So
the subscription starts today: usage is spent in the period the clock is in, as it would
be live, and the billing task is then run as of the next period starts (future instants),
where it grants and rolls over. Nothing here depends on the date: no amount is prorated.
Expiry is seen as the rollover policy's expirations; a grant lapsing on the wall clock
(the 15-minute expiry task) is covered in tests/credits, not here.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.core.months import add_months
from apps.subscriptions.periods import day_start

from .helpers import ADVANCE, Life, iso, rule

pytestmark = pytest.mark.django_db

FIVE_MINUTES = dt.timedelta(minutes=5)


def z(at: dt.datetime) -> str:
    """An instant as the API renders it."""
    return iso(at).replace("+00:00", "Z")


def test_credits_granted_spent_rolled_over_and_expired(life: Life):
    now = timezone.now()
    start = day_start(now)
    second, third = add_months(start, 1), add_months(start, 2)

    chat = life.credit_model("CHAT", rollover="full")
    img = life.credit_model("IMG", rollover="capped", cap="500", expires_months=2)
    ai = life.plan(
        "ai",
        price="20",
        timing=ADVANCE,
        features={
            "chat": rule("per_unit", price="0.01", credits="CHAT", credits_per_unit="1"),
            "images": rule("per_unit", price="0.04", credits="IMG", credits_per_unit="2"),
        },
    )
    life.allocate(ai, chat, "1000")
    life.allocate(ai, img, "1000")
    life.subscribe(ai, at=now)

    # Period 1 starts: its invoice, and 1,000 credits of each denomination.
    result = life.cycle(now)
    assert result["closed"]["credit_grants"] == 1
    # base 20.00 -> 2000
    assert life.bills() == [
        ("INV-TEST-000001", "IN_ADVANCE_INITIAL", "DUE", [("BASE", 2000)], 2000)
    ]
    life.pay(life.invoices()[0])
    pools = life.pools()
    assert (pools["CHAT"]["balance"], pools["IMG"]["balance"]) == ("1000", "1000")
    (img_grant,) = life.grants(pools["IMG"])
    # IMG grants expire 2 months after their period starts; CHAT grants never.
    assert (img_grant["grantType"], img_grant["expiresAt"]) == ("plan", z(third))
    assert life.grants(pools["CHAT"])[0]["expiresAt"] is None

    # Usage now: 300 chat units = 300 CHAT credits; 150 images x 2 = 300 IMG credits.
    (spent_chat,) = life.send((now, 300), feature="chat")
    (spent_img,) = life.send((now, 150), feature="images")
    assert (spent_chat["creditsDeducted"], spent_chat["remainingBalance"]) == ("300", "700")
    assert (spent_img["creditsDeducted"], spent_img["remainingBalance"]) == ("300", "700")
    check = life.check("chat")
    assert check["allowed"] is True
    assert (check["credits"]["denomination"], check["credits"]["balance"]) == ("CHAT", "700")

    # Period 2 starts: the invoice bills period 1's usage and gives it back as credits.
    life.cycle(second + FIVE_MINUTES)
    # base 2000
    # chat 300 x 0.01 = 3.00 -> 300, paid with credits -> -300
    # images 150 x 0.04 = 6.00 -> 600, paid with credits -> -600
    # total 2000 + 300 - 300 + 600 - 600 = 2000
    assert life.bills()[1] == (
        "INV-TEST-000002",
        "REGULAR",
        "DUE",
        [("BASE", 2000), ("USAGE", 300), ("CREDITS", -300), ("USAGE", 600), ("CREDITS", -600)],
        2000,
    )
    period_two = life.invoices()[1]
    assert (period_two["invoicePeriodStart"], period_two["invoicePeriodEnd"]) == (
        z(second),
        z(third),
    )
    credits_lines = [i for i in period_two["items"] if i["kind"] == "CREDITS"]
    assert [i["description"] for i in credits_lines] == [
        "Credits applied: chat paid with CHAT credits",
        "Credits applied: images paid with IMG credits",
    ]
    # Rollover, then period 2's grant:
    # CHAT (full): 700 carried + 1,000 = 1,700
    # IMG (capped 500): 700 left, 500 carried, 200 expire; + 1,000 = 1,500
    pools = life.pools()
    assert (pools["CHAT"]["balance"], pools["IMG"]["balance"]) == ("1700", "1500")
    assert (pools["IMG"]["totalExpired"], pools["CHAT"]["totalExpired"]) == ("200", "0")
    rollover = [g for g in life.grants(pools["IMG"]) if g["grantType"] == "rollover"]
    # The carried credits expire 2 months after the period they were carried from ended.
    assert [(g["amount"], g["expiresAt"]) for g in rollover] == [("500", z(add_months(second, 2)))]

    life.pay(life.invoices()[1])
    # Period 3 starts (no usage in period 2): base only.
    life.cycle(third + FIVE_MINUTES)
    assert life.bills() == [
        ("INV-TEST-000001", "IN_ADVANCE_INITIAL", "PAID", [("BASE", 2000)], 2000),
        (
            "INV-TEST-000002",
            "REGULAR",
            "PAID",
            [("BASE", 2000), ("USAGE", 300), ("CREDITS", -300), ("USAGE", 600), ("CREDITS", -600)],
            2000,
        ),
        ("INV-TEST-000003", "REGULAR", "DUE", [("BASE", 2000)], 2000),
    ]
    # CHAT (full): 1,700 carried + 1,000 = 2,700
    # IMG (capped 500): 1,500 left; the rollover grant (spent first) keeps 500, the plan
    # grant's 1,000 expire; + 1,000 = 1,500
    pools = life.pools()
    assert (pools["CHAT"]["balance"], pools["IMG"]["balance"]) == ("2700", "1500")
    assert pools["IMG"]["totalExpired"] == "1200"  # 200 + 1,000
    # The IMG ledger, entry by entry (type, amount, balance after): it adds up.
    assert life.ledger(pools["IMG"]) == [
        ("grant", "1000", "1000"),  # period 1
        ("deduction", "-300", "700"),  # 150 images
        ("expiration", "-200", "500"),  # period 1 ends: above the cap
        ("adjustment", "-500", "0"),  # carried ...
        ("adjustment", "500", "500"),  # ... into a rollover grant
        ("grant", "1000", "1500"),  # period 2
        ("adjustment", "-500", "1000"),  # period 2 ends: the rollover grant carried
        ("expiration", "-1000", "0"),  # the plan grant, above the cap
        ("adjustment", "500", "500"),
        ("grant", "1000", "1500"),  # period 3
    ]
    assert life.ledger(pools["CHAT"]) == [
        ("grant", "1000", "1000"),
        ("deduction", "-300", "700"),
        ("adjustment", "-700", "0"),
        ("adjustment", "700", "700"),
        ("grant", "1000", "1700"),
        ("adjustment", "-700", "1000"),
        ("adjustment", "-1000", "0"),
        ("adjustment", "1700", "1700"),
        ("grant", "1000", "2700"),
    ]
