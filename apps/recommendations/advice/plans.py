"""The plan price that would reach the target margin for a plan's median and
75th-percentile subscriber.

A subscriber with monthly cost ``C`` and usage revenue ``V = p x U`` (the events'
plan-rule revenue) reaches the target ``t`` on a fee ``F' = C / (1 - t) - V``; with one
per-unit feature, the unit price that would do it at today's fee ``F`` is
``p' = (C / (1 - t) - F) / U``. The plan's subscribers are ranked by ``F'``; when the
median one needs more than the fee, the money at stake is ``(F'_median - F) x N`` a
month (``N`` subscribers, usage unchanged, nobody leaving). The action simulates the
plan at both fees.

Subscriptions live above the read models (STYLE.md layers): the subscriptions app
registers where the live subscribers are (:func:`register_subscriber_source`), and this
module never imports it.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any

from apps.core.tenancy import scoped
from apps.customers.models import Customer
from apps.plans.models import Plan, PlanFeatureRule
from apps.recommendations.models import Recommendation

from .common import (
    EXACT_DIGITS,
    TOP_CONTRIBUTORS,
    AdviceWindow,
    Finding,
    assumption,
    money,
    simulate,
    to_cents,
)
from .ledger import Sums, WindowLedger

if TYPE_CHECKING:
    from apps.accounts.models import Environment

# environment -> [(customer id, plan id)] of the subscriptions in force.
SubscriberSource = Callable[["Environment"], list[tuple[uuid.UUID, uuid.UUID]]]
_sources: dict[str, SubscriberSource] = {}


def register_subscriber_source(name: str, source: SubscriberSource) -> None:
    """Add (or replace, by name) where the live subscribers are read from."""
    _sources[name] = source


def subscribers_by_plan(
    environment: Environment, read: WindowLedger
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """plan id -> its live subscribers' customer ids; their references join ``read``'s."""
    plans: dict[uuid.UUID, list[uuid.UUID]] = {}
    for source in _sources.values():
        for customer, plan in source(environment):
            plans.setdefault(plan, []).append(customer)
    missing = {c for customers in plans.values() for c in customers} - set(read.customer_refs)
    if missing:
        read.customer_refs.update(
            scoped(Customer, environment).filter(id__in=missing).values_list("id", "reference_id")
        )
    return plans


def percentile(values: list[Decimal], pct: int) -> Decimal:
    """Nearest rank: the smallest value with at least ``pct`` % of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct * len(ordered) / 100))
    return ordered[rank - 1]


def plan_findings(
    environment: Environment, window: AdviceWindow, read: WindowLedger
) -> list[Finding]:
    if window.target >= 1:
        return []  # no fee reaches a 100 % margin while anything costs
    subscribers = subscribers_by_plan(environment, read)
    if not subscribers:
        return []
    found = []
    plans = scoped(Plan, environment).filter(id__in=list(subscribers), currency="USD")
    for plan in plans.order_by("key"):
        finding = _finding(window, read, plan, subscribers[plan.pk])
        if finding is not None:
            found.append(finding)
    return found


def _unit_rule(plan: Plan) -> PlanFeatureRule | None:
    """The plan's one per-unit rule, if it has exactly one."""
    rules = list(
        scoped(PlanFeatureRule, plan.environment_id).filter(
            plan=plan, is_enabled=True, model=PlanFeatureRule.Model.PER_UNIT
        )
    )
    return rules[0] if len(rules) == 1 else None


def _needs(window: AdviceWindow, sums: Sums) -> tuple[Decimal, Decimal, Decimal]:
    """(monthly cost C, monthly usage revenue V, fee F' = C / (1 - t) - V)."""
    with localcontext(prec=EXACT_DIGITS):
        cost, usage_revenue = window.monthly(sums.cost), window.monthly(sums.event_revenue)
        return cost, usage_revenue, cost / (1 - window.target) - usage_revenue


def _finding(
    window: AdviceWindow, read: WindowLedger, plan: Plan, customers: list[uuid.UUID]
) -> Finding | None:
    with localcontext(prec=EXACT_DIGITS):
        fee = plan.price_amount / plan.interval_months  # USD per month
        needs = {c: _needs(window, read.customers.get(c, Sums())) for c in customers}
        fees = [need[2] for need in needs.values()]
        median, p75 = percentile(fees, 50), percentile(fees, 75)
        if median <= fee:
            return None
        stake = (median - fee) * len(customers)
    rule = _unit_rule(plan)
    unit_prices = _unit_prices(
        window, read, rule=rule, fee=fee, needs=needs, percentiles=(median, p75)
    )
    return Finding(
        kind=Recommendation.Kind.PLAN_PRICE,
        subject=f"plan:{plan.key}",
        title=f"Plan {plan.key}: a fee of {money(to_cents(median))} a month reaches the "
        f"target for its median subscriber (today {money(to_cents(fee))})",
        stake=stake,
        direction=Recommendation.Direction.GAIN_REVENUE,
        confidence=Recommendation.Confidence.MEDIUM,
        assumptions=[
            *window.assumptions(),
            assumption("usageUnchanged", "true", "subscribers use the same amount at a new price"),
            assumption("noChurn", "true", "no subscriber leaves over the new price"),
            assumption("usageRevenue", "events", "usage revenue is the events' plan-rule revenue"),
        ],
        evidence={
            "window": window.as_json(),
            "planKey": plan.key,
            "subscribers": len(customers),
            "eventCount": sum(read.customers.get(c, Sums()).events for c in customers),
            "feeMonthly": money(fee),
            "feeForMedianMonthly": money(to_cents(median)),
            "feeForP75Monthly": money(to_cents(p75)),
            **unit_prices,
            "topContributors": _top(read, needs),
        },
        action=simulate(
            window,
            name=f"Plan {plan.key} at the target margin",
            cohort={"type": "plan", "planKey": plan.key},
            scenarios=[
                _fee_scenario(plan, "the median subscriber", median),
                _fee_scenario(plan, "the 75th-percentile subscriber", p75),
            ],
        ),
    )


def _fee_scenario(plan: Plan, who: str, monthly: Decimal) -> dict[str, Any]:
    with localcontext(prec=EXACT_DIGITS):
        amount = to_cents(monthly * plan.interval_months)
    return {
        "name": f"The fee for {who}",
        "changes": [{"type": "plan_base_price", "planKey": plan.key, "amount": f"{amount:.2f}"}],
    }


def _unit_prices(
    window: AdviceWindow,
    read: WindowLedger,
    *,
    rule: PlanFeatureRule | None,
    fee: Decimal,
    needs: dict[uuid.UUID, tuple[Decimal, Decimal, Decimal]],
    percentiles: tuple[Decimal, Decimal],
) -> dict[str, Any]:
    """p' = (C / (1 - t) - F) / U for the median and p75 subscribers (one per-unit rule)."""
    if rule is None:
        return {}
    out: dict[str, Any] = {"unitPriceFeatureKey": read.feature_keys.get(rule.feature_id)}
    out["unitPrice"] = money(rule.unit_price) if rule.unit_price is not None else None
    for name, target in zip(("unitPriceForMedian", "unitPriceForP75"), percentiles, strict=True):
        customer = next(c for c, need in needs.items() if need[2] == target)
        units = window.monthly(read.pairs.get((customer, rule.feature_id), Sums()).units)
        with localcontext(prec=EXACT_DIGITS):
            cost = needs[customer][0]
            out[name] = money((cost / (1 - window.target) - fee) / units) if units else None
    return out


def _top(
    read: WindowLedger, needs: dict[uuid.UUID, tuple[Decimal, Decimal, Decimal]]
) -> list[dict[str, Any]]:
    ranked = sorted(needs.items(), key=lambda item: (-item[1][2], str(item[0])))
    return [
        {
            "customerReferenceId": read.customer_refs.get(customer, str(customer)),
            "costMonthly": money(to_cents(cost)),
            "usageRevenueMonthly": money(to_cents(revenue)),
            "feeNeededMonthly": money(to_cents(needed)),
        }
        for customer, (cost, revenue, needed) in ranked[:TOP_CONTRIBUTORS]
    ]
