"""Simulations on hand-built data: three customers on a $49 plan with 1,000 included units
and $0.01 per unit beyond; every figure below is computed by hand."""

from __future__ import annotations

import itertools
from decimal import Decimal as D
from typing import Any

import pytest

from apps.billing.models import Invoice, InvoiceLine
from apps.billing.services import billing_close_periods
from apps.core import memo
from apps.credits.services import credit_model_create, plan_allocation_set
from apps.events.ingest import events_ingest
from apps.events.models import Event
from apps.plans.pricing import PricingModel, Rule
from apps.plans.services import RuleSpec
from apps.pricing.costing import TokenUsage, quote_cost
from apps.simulations.request import parse_request
from apps.simulations.services import simulation_compute
from tests.billing.helpers import SYSTEM, _small_catalog, plan, subscribe, usage, utc
from tests.simulations.conftest import APRIL_CLOSE, INCLUDED, MARCH, RAISE, WINDOW

pytestmark = pytest.mark.django_db

_keys = itertools.count()


def run(tenant, *scenarios: dict[str, Any], **body: Any) -> dict[str, Any]:
    inputs = parse_request({"window": WINDOW, "scenarios": list(scenarios), **body})
    return simulation_compute(tenant.test, inputs)


def customers(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["customerReferenceId"]: row for row in result["customers"]}


def test_raising_price_and_unit_price_gives_hand_computed_bills_and_margins(tenant, three):
    result = run(tenant, RAISE, billShockThresholdPct="25")
    rows = customers(result)
    expected = {
        # ref: bill before, after, change, change %, cost, margin before, after, margin % after
        "cus_a": ("49.00", "59.00", "10.00", "20.41", "5", "44.00", "54.00", "91.53"),
        "cus_b": ("69.00", "89.00", "20.00", "28.99", "60", "9.00", "29.00", "32.58"),
        "cus_c": ("149.00", "209.00", "60.00", "40.27", "160", "-11.00", "49.00", "23.44"),
    }
    for ref, (before, after, change, pct, cost, m_before, m_after, m_pct) in expected.items():
        row, (scenario,) = rows[ref], rows[ref]["scenarios"]
        assert D(row["before"]["bill"]) == D(before)
        assert D(scenario["bill"]) == D(after)
        assert D(scenario["change"]) == D(change)
        assert D(scenario["changePct"]) == D(pct)
        assert D(row["before"]["cost"]) == D(scenario["cost"]) == D(cost)
        assert D(row["before"]["margin"]) == D(m_before)
        assert D(scenario["margin"]) == D(m_after)
        assert D(scenario["marginPct"]) == D(m_pct)
    (summary,) = result["scenarios"]
    assert D(summary["totals"]["billBefore"]) == D("267.00")
    assert D(summary["totals"]["billAfter"]) == D("357.00")
    assert summary["customers"] == {"up": 3, "down": 0, "unchanged": 0}
    assert [row["customerReferenceId"] for row in summary["topLosers"]] == [
        "cus_c",
        "cus_b",
        "cus_a",
    ]
    assert D(summary["distribution"]["p50"]) == D("20.00")
    assert D(summary["distribution"]["p10"]) == D("10.00")
    assert D(summary["distribution"]["p99"]) == D("60.00")
    # 25 %: cus_b and cus_c are shocked; at risk is what they paid before.
    assert rows["cus_a"]["scenarios"][0]["flags"] == []
    assert "bill_shock" in rows["cus_b"]["scenarios"][0]["flags"]
    assert "bill_shock" in rows["cus_c"]["scenarios"][0]["flags"]
    assert D(summary["revenueAtRisk"]) == D("218.00")
    # cus_c was losing money (loss band) and is not any more.
    assert rows["cus_c"]["before"]["band"] == "loss"
    assert "crosses_band" in rows["cus_c"]["scenarios"][0]["flags"]


def test_bill_shock_follows_the_threshold(tenant, three):
    default = customers(run(tenant, RAISE))
    assert all("bill_shock" in default[ref]["scenarios"][0]["flags"] for ref in default)
    high = customers(run(tenant, RAISE, billShockThresholdPct="50"))
    assert not any("bill_shock" in high[ref]["scenarios"][0]["flags"] for ref in high)


def test_the_null_scenario_equals_the_invoices_to_the_cent(tenant, three):
    result = run(tenant, {"name": "nothing", "changes": []})
    assert result["reconciliation"] == {
        "periods": 3,
        "matched": 3,
        "notInvoiced": 0,
        "mismatchCount": 0,
        "mismatches": [],
    }
    for row in result["customers"]:
        invoice = Invoice.objects.get(customer__reference_id=row["customerReferenceId"])
        assert D(row["before"]["bill"]) == D(invoice.total_minor) / 100
        assert row["scenarios"][0]["bill"] == row["before"]["bill"]
        assert D(row["scenarios"][0]["change"]) == 0
    assert result["scenarios"][0]["customers"] == {"up": 0, "down": 0, "unchanged": 3}


def test_a_late_event_is_reported_as_a_mismatch(tenant, three):
    usage(tenant.test, (utc(2026, 3, 25, 12), 100), reference="cus_b", cost="1")
    result = run(tenant, {"name": "nothing", "changes": []})
    (mismatch,) = result["reconciliation"]["mismatches"]
    assert mismatch["customerReferenceId"] == "cus_b"
    assert (D(mismatch["simulated"]), D(mismatch["invoiced"])) == (D("70.00"), D("69.00"))


def test_nothing_is_written(tenant, three):
    def snapshot() -> tuple:
        return (
            list(Event.objects.order_by("pk").values_list("pk", "usage_units", "cost_usd")),
            list(Invoice.objects.order_by("pk").values_list("pk", "total_minor", "status")),
            list(InvoiceLine.objects.order_by("pk").values_list("pk", "amount_minor")),
        )

    before = snapshot()
    run(tenant, RAISE, {"name": "move", "changes": [{"type": "discount", "percent": "10"}]})
    assert snapshot() == before


def test_discount_and_cohort_of_customers(tenant, three):
    result = run(
        tenant,
        {"name": "10 % off", "changes": [{"type": "discount", "percent": "10", "planKey": "pro"}]},
        cohort={"type": "customers", "customerReferenceIds": ["cus_b"]},
    )
    (row,) = result["customers"]
    assert row["customerReferenceId"] == "cus_b"
    assert D(row["scenarios"][0]["bill"]) == D("62.10")


def test_an_outsider_sees_nothing_of_the_tenant(tenant, outsider, three):
    inputs = parse_request({"window": WINDOW, "scenarios": [{"name": "x", "changes": []}]})
    result = simulation_compute(outsider.test, inputs)
    assert result["customers"] == [] and result["periodCount"] == 0
    assert simulation_compute(tenant.live, inputs)["customers"] == []


def _ingest_model_events(environment, reference: str) -> None:
    _small_catalog()
    items = [
        {
            "eventIdempotencyKey": f"m-{next(_keys)}",
            "eventName": "chat",
            "customerReferenceId": reference,
            "featureKey": "tokens",
            "usageUnits": "100",
            "model": "gpt-4o",
            "provider": "openai",
            "inputTokens": 1000 * n,
            "outputTokens": 300 * n,
            "occurredAt": utc(2026, 3, 10 + n, 12).isoformat(),
        }
        for n in (1, 2)
    ]
    result = events_ingest(environment=environment, items=items, api_key_id=None)
    assert result.accepted == 2, result.errors


def test_a_model_swap_equals_the_catalogs_repricing(tenant):
    pro = plan(tenant.test, "pro", price=49, features={"tokens": INCLUDED})
    subscribe(tenant.test, pro, at=MARCH, reference="cus_m")
    _ingest_model_events(tenant.test, "cus_m")
    billing_close_periods(now=APRIL_CLOSE)
    memo.clear_all()
    swap = {
        "name": "mini",
        "changes": [
            {
                "type": "model_swap",
                "featureKey": "tokens",
                "fromModel": "gpt-4o",
                "toModel": "gpt-4o-mini",
                "toProvider": "openai",
            }
        ],
    }
    result = run(tenant, swap)
    (row,) = result["customers"]
    expected = quote_cost(
        environment_id=tenant.test.pk,
        model="gpt-4o-mini",
        provider="openai",
        usage=TokenUsage(
            input_tokens=3000,
            output_tokens=900,
            cache_read_tokens=0,
            cache_write_tokens=0,
            reasoning_tokens=0,
            requests=2,
        ),
        at=utc(2026, 4, 15),
    ).cost_usd
    assert expected is not None and expected > 0
    assert D(row["scenarios"][0]["cost"]) == expected
    # gpt-4o: 3,000 input at $2.50/M and 900 output at $10/M.
    assert D(row["before"]["cost"]) == D("0.0165")
    assert row["scenarios"][0]["bill"] == row["before"]["bill"]


def test_an_unknown_plan_or_model_is_a_400_naming_the_change(tenant, three):
    from apps.core.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as caught:
        run(
            tenant,
            {
                "name": "x",
                "changes": [{"type": "plan_base_price", "planKey": "nope", "amount": "1"}],
            },
        )
    assert "scenarios.0.changes.0.planKey" in caught.value.fields


def test_a_credit_weight_change_moves_pool_exhaustion_as_computed(tenant):
    """agent: $0.01 a unit paid with AGENT credits (2 a unit); the plan grants 1,000 hard-limit
    credits a period. 200 units on March 3rd, 10th and 20th draw 400 credits each: the pool
    runs dry on the 20th with 100 units uncovered ($1.00 on the invoice)."""
    agent = RuleSpec(
        rule=Rule(PricingModel.PER_UNIT, unit_price=D("0.01")),
        credit_denomination="AGENT",
        credits_per_unit=D(2),
    )
    the_plan = plan(tenant.test, "cred", price=10, features={"agent": agent})
    model = credit_model_create(
        environment=tenant.test, name="Agent credits", denomination="AGENT", actor=SYSTEM
    )
    plan_allocation_set(
        environment=tenant.test,
        plan_key="cred",
        credit_model=model,
        credit_amount=D(1000),
        actor=SYSTEM,
    )
    subscribe(tenant.test, the_plan, at=MARCH, reference="cus_k")
    billing_close_periods(now=utc(2026, 3, 1, 10))  # grants March's credits
    for day in (3, 10, 20):
        usage(tenant.test, (utc(2026, 3, day, 12), 200), feature="agent", reference="cus_k")
    billing_close_periods(now=APRIL_CLOSE)
    weights = [
        {
            "name": f"weight {w}",
            "changes": [{"type": "credit_weight", "featureKey": "agent", "weight": w}],
        }
        for w in ("1.5", "3")
    ]
    result = run(tenant, *weights)
    assert result["reconciliation"]["mismatchCount"] == 0
    (row,) = result["customers"]
    before, lighter, heavier = row["before"], *row["scenarios"]
    assert (before["poolExhaustedOn"], D(before["creditsConsumed"])) == ("2026-03-20", 1000)
    assert D(before["bill"]) == D("11.00")
    # 1.5 a unit: 900 credits, never dry; every unit covered.
    assert (lighter["poolExhaustedOn"], D(lighter["creditsConsumed"])) == (None, 900)
    assert D(lighter["bill"]) == D("10.00")
    # 3 a unit: 600 on the 3rd, 600 more on the 10th with 400 left: dry on the 10th;
    # a third of that day's 200 units and all of the 20th's uncovered: 266.666666666667 units
    # at $0.01 = 6.00 charged less 3.33 of credits applied.
    assert (heavier["poolExhaustedOn"], D(heavier["creditsConsumed"])) == ("2026-03-10", 1000)
    assert D(heavier["bill"]) == D("12.67")
