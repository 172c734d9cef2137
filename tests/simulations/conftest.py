"""Hand-built data for the simulation tests: three customers on a $49 plan with 1,000
included units and $0.01 per unit beyond, March invoiced."""

from __future__ import annotations

import pytest

from apps.billing.services import billing_close_periods
from apps.plans.pricing import PricingModel, Rule
from apps.plans.services import RuleSpec
from tests.billing.helpers import plan, subscribe, tiers, usage, utc

MARCH = utc(2026, 3, 1, 9)
APRIL_CLOSE = utc(2026, 4, 1, 0, 5)
WINDOW = {"from": "2026-03-15T00:00:00Z", "to": "2026-04-15T00:00:00Z"}
INCLUDED = RuleSpec(
    rule=Rule(model=PricingModel.GRADUATED, tiers=tiers(("1000", "0"), (None, "0.01")))
)
RAISE = {
    "name": "Pro at $59, $0.015 per unit",
    "changes": [
        {"type": "plan_base_price", "planKey": "pro", "amount": "59.00"},
        {
            "type": "pricing_rule",
            "planKey": "pro",
            "featureKey": "tokens",
            "rule": {
                "model": "graduated",
                "tiers": [
                    {"upTo": "1000", "pricePerUnit": "0"},
                    {"upTo": None, "pricePerUnit": "0.015"},
                ],
            },
        },
    ],
}


@pytest.fixture
def three(tenant):
    """cus_a uses 500 units (cost $5), cus_b 3,000 (two events, $30 each), cus_c 11,000
    ($160): March is invoiced at $49.00, $69.00 and $149.00."""
    pro = plan(tenant.test, "pro", price=49, features={"tokens": INCLUDED})
    for ref in ("cus_a", "cus_b", "cus_c"):
        subscribe(tenant.test, pro, at=MARCH, reference=ref)
    usage(tenant.test, (utc(2026, 3, 3, 12), 500), reference="cus_a", cost="5")
    usage(
        tenant.test,
        (utc(2026, 3, 4, 12), 1500),
        (utc(2026, 3, 20, 12), 1500),
        reference="cus_b",
        cost="30",
    )
    usage(tenant.test, (utc(2026, 3, 5, 12), 11000), reference="cus_c", cost="160")
    billing_close_periods(now=APRIL_CLOSE)
    return pro
