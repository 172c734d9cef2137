"""Money in the readable price texts (plans, rules, invoice lines) keeps the currency's
minor digits: "$19.50 per month", never "$19.5"; exact sub-cent unit prices stay exact."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.core.money_format import format_price as money
from apps.plans.models import Plan
from apps.plans.pricing import PricingModel, Rule, Tier
from apps.plans.rendering import describe_plan_price, describe_rule
from tests.plans.helpers import make_plan

from .html import find_all


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        ("19.5", "USD", "$19.50"),
        ("19.50", "USD", "$19.50"),
        ("49", "USD", "$49.00"),
        ("1234.5", "EUR", "€1,234.50"),
        ("0", "USD", "$0.00"),
        ("0.0025", "USD", "$0.0025"),  # a unit price: exact
        ("0.002", "GBP", "£0.002"),
        ("1000", "JPY", "¥1,000"),  # no minor unit
        ("2.5", "KWD", "2.500\u00a0KWD"),  # three
        ("7.1", "CHF", "7.10\u00a0CHF"),
    ],
)
def test_money_keeps_the_minor_digits(amount, currency, shown):
    assert money(Decimal(amount), currency) == shown


def test_rule_texts():
    tiers = (
        Tier(up_to=Decimal(1000), unit_price=Decimal(0), flat_fee=Decimal(0)),
        Tier(up_to=None, unit_price=Decimal("0.0025"), flat_fee=Decimal("5.5")),
    )
    text = describe_rule(
        Rule(model=PricingModel.GRADUATED, tiers=tiers),
        unit_label="token",
        currency="USD",
        reset_interval="billing_period",
    )
    assert text == "First 1,000 tokens free, then $0.0025 per token + $5.50 flat"
    package = describe_rule(
        Rule(model=PricingModel.PACKAGE, unit_price=Decimal(5), package_size=100),
        unit_label="export",
        currency="USD",
        reset_interval="billing_period",
    )
    assert package == "$5.00 per 100 exports"


@pytest.mark.django_db
def test_plan_pages_show_cents(tenant, web):
    plan = make_plan(tenant.test, "team", price="19.5")
    assert describe_plan_price(plan) == "$19.50 per month"
    yearly = make_plan(tenant.test, "yearly", price="190", interval_months=Plan.Interval.ANNUAL)
    assert describe_plan_price(yearly) == "$190.00 per year"
    listing = web.get("/dashboard/plans/").content.decode()
    assert "$19.50 per month" in listing and "$19.5 per" not in listing
    page = web.get(f"/dashboard/plans/{plan.pk}/").content.decode()
    assert "$19.50 per month" in page
    assert "$0.002 per" in page  # the default rule's unit price, exact
    api = tenant.api().get("/api/v1/client/plans/team").json()
    assert api["priceAmount"] == "19.5"  # the API keeps the exact decimal string
    assert find_all(listing.encode(), "tr", data_plan="team")
