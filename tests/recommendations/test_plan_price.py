"""The plan price that reaches the target margin for a plan's median and 75th-percentile
subscriber, hand-computed."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.recommendations.models import Recommendation
from tests.billing.helpers import per_unit, plan, subscribe

from .conftest import at, compute, event, findings, ingest, stake

pytestmark = pytest.mark.django_db


def test_the_fee_for_the_median_and_p75_subscriber(tenant, outsider, catalog):
    pro = plan(tenant.test, "pro", price="49", features={"chat": per_unit("0.01")})
    started = timezone.now() - dt.timedelta(days=40)
    client = tenant.api()
    # (customer, cost, usage revenue, units) over the last 30 days; t = 0.70.
    for reference, cost, revenue, units in (
        ("cus_1", "10", "5", "500"),
        ("cus_2", "30", "10", "1000"),
        ("cus_3", "60", "20", "2000"),
    ):
        subscribe(tenant.test, pro, at=started, reference=reference)
        ingest(
            client,
            event(reference, "chat", when=at(1), cost=cost, revenue=revenue, usageUnits=units),
        )
    compute(tenant.test)
    row = findings(tenant.test, Recommendation.Kind.PLAN_PRICE)["plan:pro"]
    # F' = C / 0.3 - V: 28.33..., 90, 180. Median (2nd of 3) 90, p75 (3rd) 180.
    # At stake: (90 - 49) x 3 subscribers = 123.00 a month.
    assert stake(row) == Decimal("123.00")
    assert row.direction == Recommendation.Direction.GAIN_REVENUE
    evidence = row.evidence
    assert (evidence["feeMonthly"], evidence["feeForMedianMonthly"]) == ("49", "90")
    assert evidence["feeForP75Monthly"] == "180"
    assert evidence["subscribers"] == 3
    # p' = (C / 0.3 - 49) / U: (100 - 49) / 1000 and (200 - 49) / 2000.
    assert evidence["unitPriceForMedian"] == "0.051"
    assert evidence["unitPriceForP75"] == "0.0755"
    assert evidence["topContributors"][0]["customerReferenceId"] == "cus_3"
    request = row.action["request"]
    assert request["cohort"] == {"type": "plan", "planKey": "pro"}
    assert [s["changes"] for s in request["scenarios"]] == [
        [{"type": "plan_base_price", "planKey": "pro", "amount": "90.00"}],
        [{"type": "plan_base_price", "planKey": "pro", "amount": "180.00"}],
    ]
    compute(outsider.test)
    assert findings(outsider.test) == {}


def test_no_finding_when_the_fee_already_reaches_the_target(tenant, catalog):
    pro = plan(tenant.test, "pro", price="500", features={"chat": per_unit("0.01")})
    subscribe(tenant.test, pro, at=timezone.now() - dt.timedelta(days=40), reference="cus_1")
    ingest(tenant.api(), event("cus_1", "chat", when=at(1), cost="60", revenue="20"))
    compute(tenant.test)
    assert findings(tenant.test, Recommendation.Kind.PLAN_PRICE) == {}


def test_free_plan_customers_above_the_p90_of_cost(tenant, catalog):
    free = plan(tenant.test, "free", price="0", features={"chat": per_unit("0")})
    plan(tenant.test, "starter", price="19", features={"chat": per_unit("0.01")})
    started = timezone.now() - dt.timedelta(days=40)
    client = tenant.api()
    # Ten free subscribers costing 1..9 and 50 USD: the p90 (9th of 10) is 9; cus_10 is
    # 41 above it.
    for n, cost in enumerate(["1", "2", "3", "4", "5", "6", "7", "8", "9", "50"], start=1):
        subscribe(tenant.test, free, at=started, reference=f"cus_{n}")
        ingest(client, event(f"cus_{n}", "chat", when=at(1), cost=cost, revenue="0"))
    compute(tenant.test)
    row = findings(tenant.test, Recommendation.Kind.FREE_PLAN_OUTLIER)["plan:free|above-p90"]
    assert stake(row) == Decimal("41.00")
    assert row.evidence["p90CostMonthly"] == "9"
    assert row.evidence["subscribers"] == 10
    assert [c["customerReferenceId"] for c in row.evidence["topContributors"]] == ["cus_10"]
    request = row.action["request"]
    assert request["cohort"] == {"type": "customers", "customerReferenceIds": ["cus_10"]}
    assert request["scenarios"][0]["changes"] == [
        {"type": "move_plan", "fromPlanKey": "free", "toPlanKey": "starter"}
    ]
