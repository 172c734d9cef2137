"""Credits under a scenario: what a period's usage of credit-backed features draws, and when
the plan's pool for the period runs dry.

A deduction is ``units x weight`` rounded by the credits app's one rounding
(:func:`apps.credits.amounts.quantize_credits`), the weight the one ingestion uses
(:func:`apps.credits.services.deductions.usage_quote`: the model's weight beats the
feature's, then the rule's ``creditsPerUnit``, then 1) unless the scenario sets one.
Here units are summed per day x feature x model before the rounding (ingestion rounds
per event, so consumed credits can differ by at most half a millionth of a credit per
event).

The pool is what the plan grants each period (its credit allocations); purchased
top-ups and rollover are not counted. Days are drawn in order; on the day the pool runs
dry the day's units are covered in proportion to what was left; under a hard-limit pool
the rest is uncovered (charged at the rule's price by the invoice), under a soft one it
stays covered (the pool goes negative).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from decimal import Decimal, localcontext
from typing import Any

from apps.credits.amounts import quantize_credits
from apps.credits.services.deductions import usage_quote
from apps.plans.models import PlanFeatureRule

from .catalog import Base, ScenarioCatalog

ZERO = Decimal(0)
UNIT_QUANTUM = Decimal(1).scaleb(-12)  # usage units are stored with 12 places

# (feature_id, model) -> units, per UTC day
Daily = dict[dt.datetime, dict[tuple[Any, str], Decimal]]


@dataclasses.dataclass
class CreditFigures:
    consumed: Decimal = ZERO  # credits drawn (under a hard limit, at most the pool)
    exhausted_on: dt.datetime | None = None
    uncovered: dict[Any, Decimal] = dataclasses.field(default_factory=dict)


def weight_of(
    base: Base, catalog: ScenarioCatalog, rule: PlanFeatureRule, model: str, at: dt.datetime
) -> Decimal:
    override = catalog.weight_override(rule.feature_id, model)
    if override is not None:
        return override
    return usage_quote(
        base.environment_id, rule.feature_id, model, at, rule.credits_per_unit
    ).credits_per_unit


def _pools(base: Base, plan_key: str) -> dict[str, tuple[Decimal, bool]]:
    out: dict[str, tuple[Decimal, bool]] = {}
    for allocation in base.allocations.get(plan_key, []):
        amount, hard = out.get(allocation.denomination, (ZERO, False))
        out[allocation.denomination] = (amount + allocation.amount, hard or allocation.hard_limit)
    return out


def draw(
    base: Base,
    catalog: ScenarioCatalog,
    *,
    backed: dict[Any, PlanFeatureRule],
    daily: Daily,
    plan_key: str,
    at: dt.datetime,
) -> CreditFigures:
    """The period's credits drawn per denomination, day by day, from the plan's pool."""
    out = CreditFigures()
    pools = _pools(base, plan_key)
    remaining = {denomination: amount for denomination, (amount, _hard) in pools.items()}
    weights: dict[tuple[Any, str], Decimal] = {}
    uncovered: dict[Any, Decimal] = defaultdict(lambda: ZERO)
    with localcontext(prec=100):
        for day in sorted(daily):
            by_denomination: dict[str, list[tuple[Any, Decimal, Decimal]]] = defaultdict(list)
            for (feature_id, model), units in daily[day].items():
                rule = backed.get(feature_id)
                if rule is None or units == 0:
                    continue
                key = (feature_id, model)
                if key not in weights:
                    weights[key] = weight_of(base, catalog, rule, model, at)
                credits = quantize_credits(units * weights[key])
                by_denomination[rule.credit_denomination].append((feature_id, units, credits))
            for denomination, parts in by_denomination.items():
                need = sum((credits for *_rest, credits in parts), ZERO)
                left = remaining.get(denomination)
                if left is None or need <= left:  # no plan pool: nothing to draw down
                    out.consumed += need
                    if left is not None:
                        remaining[denomination] = left - need
                    continue
                if out.exhausted_on is None:
                    out.exhausted_on = day
                remaining[denomination] = ZERO
                if not pools[denomination][1]:  # soft: the pool goes negative
                    out.consumed += need
                    continue
                out.consumed += left  # hard: what was left; the rest is not covered
                share = (need - left) / need
                for feature_id, units, _credits in parts:
                    uncovered[feature_id] += units * share
    out.uncovered = {key: value.quantize(UNIT_QUANTUM) for key, value in uncovered.items()}
    return out
