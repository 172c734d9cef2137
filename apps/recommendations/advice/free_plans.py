"""Free-plan customers above the 90th percentile of cost.

For each plan with no fee, its subscribers' monthly costs are ranked; those above the
90th percentile (nearest rank) cost more than nine in ten of their peers, and the money
at stake is what they cost beyond it, ``sum(C - C_p90)`` a month. The action simulates
moving them to the cheapest paid plan in force (or shows them as they are when there is
none). The live subscribers come from the source the subscriptions app registers
(:func:`.plans.register_subscriber_source`).
"""

from __future__ import annotations

import uuid
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any

from apps.core.tenancy import scoped
from apps.plans.models import Plan
from apps.recommendations.models import Recommendation

from .common import EXACT_DIGITS, AdviceWindow, Finding, assumption, money, simulate, to_cents
from .ledger import Sums, WindowLedger
from .plans import percentile, subscribers_by_plan

if TYPE_CHECKING:
    from apps.accounts.models import Environment

PERCENTILE = 90
MIN_SUBSCRIBERS = 2  # a percentile of one subscriber says nothing


def free_plan_findings(
    environment: Environment, window: AdviceWindow, read: WindowLedger
) -> list[Finding]:
    subscribers = subscribers_by_plan(environment, read)
    if not subscribers:
        return []
    plans = scoped(Plan, environment).filter(id__in=list(subscribers))
    paid = (
        scoped(Plan, environment)
        .filter(status=Plan.Status.ACTIVE, price_amount__gt=0)
        .order_by("price_amount", "key")
        .first()
    )
    found = []
    for plan in plans.filter(price_amount=0).order_by("key"):
        customers = subscribers[plan.pk]
        if len(customers) >= MIN_SUBSCRIBERS:
            finding = _finding(window, read, plan, customers, paid)
            if finding is not None:
                found.append(finding)
    return found


def _finding(
    window: AdviceWindow,
    read: WindowLedger,
    plan: Plan,
    customers: list[uuid.UUID],
    paid: Plan | None,
) -> Finding | None:
    costs = {c: window.monthly(read.customers.get(c, Sums()).cost) for c in customers}
    line = percentile(list(costs.values()), PERCENTILE)
    above = sorted(
        ((cost, c) for c, cost in costs.items() if cost > line), key=lambda x: (-x[0], str(x[1]))
    )
    if not above:
        return None
    with localcontext(prec=EXACT_DIGITS):
        stake = sum((cost - line for cost, _c in above), Decimal(0))
    refs = [read.customer_refs.get(c, str(c)) for _cost, c in above]
    return Finding(
        kind=Recommendation.Kind.FREE_PLAN_OUTLIER,
        subject=f"plan:{plan.key}|above-p{PERCENTILE}",
        title=f"Free plan {plan.key}: {len(above)} customer(s) cost more than "
        f"{PERCENTILE} % of its subscribers",
        stake=stake,
        direction=Recommendation.Direction.PROTECT_MARGIN,
        confidence=Recommendation.Confidence.MEDIUM,
        assumptions=[
            *window.assumptions(),
            assumption("percentile", PERCENTILE, "the line: nearest rank over the subscribers"),
        ],
        evidence={
            "window": window.as_json(),
            "planKey": plan.key,
            "subscribers": len(customers),
            "eventCount": sum(read.customers.get(c, Sums()).events for c in customers),
            "p90CostMonthly": money(to_cents(line)),
            "topContributors": [
                {
                    "customerReferenceId": ref,
                    "costMonthly": money(to_cents(cost)),
                    "aboveP90Monthly": money(to_cents(cost - line)),
                }
                for (cost, _c), ref in zip(above[:5], refs, strict=False)
            ],
        },
        action=simulate(
            window,
            name=f"Free plan {plan.key}: its costliest customers",
            cohort={"type": "customers", "customerReferenceIds": refs},
            scenarios=[_scenario(plan, paid)],
        ),
    )


def _scenario(plan: Plan, paid: Plan | None) -> dict[str, Any]:
    if paid is None:
        return {"name": "As today", "changes": []}
    return {
        "name": f"On {paid.key}",
        "changes": [{"type": "move_plan", "fromPlanKey": plan.key, "toPlanKey": paid.key}],
    }
