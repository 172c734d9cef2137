"""Credit-backed usage on the invoice: the "Credits applied" line gives back the money value
of the units credits paid for, and only those. Units a hard-limit pool could not cover
(the event's ``creditShortfall``) stay charged at the rule's price, and the line says so.

Events go through the real ingestion path (the credits step deducts from the pool and
stamps the shortfall on the event); each is sent on its own so the pool is drawn in order.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from apps.billing.services import billing_close_periods
from apps.credits.models import CreditPool, GrantType
from apps.credits.services import credit_grant, credit_model_create, credit_pool_ensure
from apps.events.models import Event
from apps.plans.pricing import PricingModel, Rule
from apps.plans.services import RuleSpec
from tests.billing.helpers import (
    SYSTEM,
    customer,
    invoices_of,
    lines,
    plan,
    subscribe,
    tiers,
    usage,
    utc,
)

pytestmark = pytest.mark.django_db

OCTOBER = utc(2026, 10, 1, 9)
NOVEMBER_CLOSE = utc(2026, 11, 1, 0, 5)
DECEMBER_CLOSE = utc(2026, 12, 1, 0, 5)


def credit_backed(rule: Rule, denomination: str, per_unit: str) -> RuleSpec:
    return RuleSpec(rule=rule, credit_denomination=denomination, credits_per_unit=D(per_unit))


def send(tenant, *events: tuple[dt.datetime, int], feature: str) -> None:
    for at, units in events:
        usage(tenant.test, (at, units), feature=feature)


def pool_with(tenant, denomination: str, credits: str, *, hard_limit: bool = True) -> CreditPool:
    model = credit_model_create(
        environment=tenant.test,
        name=denomination,
        denomination=denomination,
        hard_limit=hard_limit,
        actor=SYSTEM,
    )
    pool = credit_pool_ensure(
        environment=tenant.test, customer=customer(tenant.test), credit_model=model
    )
    top_up(pool, credits, "first")
    return pool


def top_up(pool: CreditPool, credits: str, ref: str) -> None:
    credit_grant(
        pool=pool, amount=D(credits), grant_type=GrantType.MANUAL, source_ref=ref, actor=SYSTEM
    )


def test_units_a_hard_limit_pool_did_not_cover_stay_charged(tenant):
    # chat: $0.01 a unit, 2 CHAT credits a unit; the pool holds 100 credits (50 units).
    the_plan = plan(
        tenant.test,
        features={
            "chat": credit_backed(Rule(PricingModel.PER_UNIT, unit_price=D("0.01")), "CHAT", "2")
        },
    )
    pool = pool_with(tenant, "CHAT", "100")
    sub = subscribe(tenant.test, the_plan, at=OCTOBER)
    send(
        tenant,
        (utc(2026, 10, 5), 30),  # 60 credits: covered, 40 left
        (utc(2026, 10, 6), 40),  # 80 asked, 40 taken: shortfall 40 credits = 20 units
        (utc(2026, 10, 7), 25),  # 50 asked, none left: shortfall 50 credits = 25 units
        feature="chat",
    )
    shortfalls = sorted(
        e.flags.get("credit_shortfall", "0")
        for e in Event.objects.filter(environment_id=tenant.test.pk)
    )
    assert shortfalls == ["0", "40", "50"]

    billing_close_periods(now=NOVEMBER_CLOSE)
    (october,) = invoices_of(sub)
    # usage 95 units x 0.01 = 0.95 -> 95
    # credits covered 95 - (20 + 25) = 50 units: -(50 x 0.01) = -0.50 -> -50
    #   (before: -0.95, the whole charge back, so the 45 uncovered units were free)
    # total 0 (no base fee) + 95 - 50 = 45 = the 45 uncovered units x 0.01
    assert lines(october) == [("base", 0), ("usage", 95), ("credits", -50)]
    assert october.total_minor == 45
    usage_line = october.lines.get(kind="usage")
    assert (usage_line.units_total, usage_line.units_uncovered) == (D(95), D(45))
    credits_line = october.lines.get(kind="credits")
    assert credits_line.quantity == D(50)
    assert credits_line.description == (
        "Credits applied: chat paid with CHAT credits (50 of 95 units); "
        "45 units not covered by credits, charged at the plan's price"
    )
    assert credits_line.details["uncoveredUnits"] == "45"

    # Late October events after the invoice, with 20 more credits in the pool:
    top_up(pool, "20", "second")
    send(
        tenant,
        (utc(2026, 10, 20), 10),  # 20 credits: covered
        (utc(2026, 10, 21), 5),  # 10 asked, none left: 5 units uncovered
        feature="chat",
    )
    billing_close_periods(now=DECEMBER_CLOSE)
    november = invoices_of(sub)[-1]
    # October now: 110 units, 50 uncovered. In money: 110 x 0.01 - 60 covered x 0.01 = 0.50;
    # billed 0.45 -> +0.05 -> 5 (the 5 uncovered late units x 0.01; the 10 covered: 0).
    assert lines(november) == [("base", 0), ("late_usage", 5)]
    late = november.lines.get(kind="late_usage")
    assert (late.quantity, late.units_uncovered) == (D(15), D(5))
    assert late.description.endswith(
        "+15 units (billed 95, now 110), paid with CHAT credits except 5 units not covered "
        "by credits"
    )


def test_graduated_the_uncovered_units_are_the_periods_last(tenant):
    # images: graduated, the first 10 at $0.10, beyond at $0.05; 1 IMG credit a unit;
    # the pool holds 12 credits.
    graduated = Rule(PricingModel.GRADUATED, tiers=tiers(("10", "0.10"), (None, "0.05")))
    the_plan = plan(tenant.test, features={"images": credit_backed(graduated, "IMG", "1")})
    pool_with(tenant, "IMG", "12")
    sub = subscribe(tenant.test, the_plan, at=OCTOBER)
    send(tenant, (utc(2026, 10, 5), 8), (utc(2026, 10, 6), 10), feature="images")  # 6 short
    billing_close_periods(now=NOVEMBER_CLOSE)
    (october,) = invoices_of(sub)
    # usage 18 on the total: 10 x 0.10 + 8 x 0.05 = 1.40 -> 140
    # covered: the first 12 units: 10 x 0.10 + 2 x 0.05 = 1.10 -> -110
    # total 30 = the last 6 units, in the $0.05 tier
    assert lines(october) == [("base", 0), ("usage", 140), ("credits", -110)]
    assert october.total_minor == 30


def test_a_fully_covered_period_nets_to_zero_as_before(tenant):
    the_plan = plan(
        tenant.test,
        features={
            "chat": credit_backed(Rule(PricingModel.PER_UNIT, unit_price=D("0.01")), "CHAT", "1")
        },
    )
    pool_with(tenant, "CHAT", "1000")
    sub = subscribe(tenant.test, the_plan, at=OCTOBER)
    send(tenant, (utc(2026, 10, 5), 300), feature="chat")
    billing_close_periods(now=NOVEMBER_CLOSE)
    (october,) = invoices_of(sub)
    # 300 x 0.01 = 3.00, all paid with credits
    assert lines(october) == [("base", 0), ("usage", 300), ("credits", -300)]
    assert october.lines.get(kind="credits").description == (
        "Credits applied: chat paid with CHAT credits"
    )


def test_a_soft_limit_pool_covers_everything_its_debt_included(tenant):
    """A soft pool goes negative instead (the debt is paid by the next credits): no
    shortfall, so the whole charge is given back, as before."""
    the_plan = plan(
        tenant.test,
        features={
            "chat": credit_backed(Rule(PricingModel.PER_UNIT, unit_price=D("0.01")), "CHAT", "1")
        },
    )
    pool_with(tenant, "CHAT", "100", hard_limit=False)
    sub = subscribe(tenant.test, the_plan, at=OCTOBER)
    send(tenant, (utc(2026, 10, 5), 150), feature="chat")  # balance -50
    billing_close_periods(now=NOVEMBER_CLOSE)
    (october,) = invoices_of(sub)
    assert lines(october) == [("base", 0), ("usage", 150), ("credits", -150)]


def test_units_charged_in_a_denomination_without_a_credit_model_stay_charged(tenant):
    """No credit model for the rule's denomination: ingestion deducts nothing (the event
    is flagged ``credit_error``), so nothing is given back for those units. Once the
    model exists, its pool pays for the units after that, and only those."""
    the_plan = plan(
        tenant.test,
        features={
            "chat": credit_backed(Rule(PricingModel.PER_UNIT, unit_price=D("0.01")), "CHAT", "1")
        },
    )
    sub = subscribe(tenant.test, the_plan, at=OCTOBER)
    send(tenant, (utc(2026, 10, 5), 30), feature="chat")  # no CHAT model: nothing deducted
    (flagged,) = Event.objects.filter(environment_id=tenant.test.pk)
    assert flagged.flags["credit_error"] == "unknown_denomination"
    pool_with(tenant, "CHAT", "100", hard_limit=False)
    send(tenant, (utc(2026, 10, 6), 20), feature="chat")  # 20 credits from the soft pool

    billing_close_periods(now=NOVEMBER_CLOSE)
    (october,) = invoices_of(sub)
    # usage 50 units x 0.01 = 0.50 -> 50; the pool paid for 20 units: -0.20 -> -20
    # (before: -50, the 30 units no credits paid for were free).
    assert lines(october) == [("base", 0), ("usage", 50), ("credits", -20)]
    assert october.total_minor == 30
    usage_line = october.lines.get(kind="usage")
    assert (usage_line.units_total, usage_line.units_uncovered) == (D(50), D(30))
