"""From re-rated periods to the answer: per customer before and after each scenario, their
flags, the aggregates, and the reconciliation of "before" with the invoices.

Money is ``Decimal`` throughout and rendered as decimal strings. Bills are sums of lines
each rounded once to the currency's minor unit; costs are USD with the ledger's 12
places; percentages are rounded to 0.01 at the end (half to even).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from apps.analytics.selectors import band_of
from apps.analytics.selectors.totals import Totals
from apps.core.money import decimal_str

from .engine import Figures, PeriodResult
from .request import SimulationInput

ZERO = Decimal(0)
HUNDRED = Decimal(100)
CENT = Decimal("0.01")
TOP = 5
MISMATCHES_SHOWN = 100


def _pct(part: Decimal, whole: Decimal) -> Decimal | None:
    if whole == 0:
        return None
    return (part * HUNDRED / whole).quantize(CENT, rounding=ROUND_HALF_EVEN)


def _s(value: Decimal | None) -> str | None:
    return None if value is None else decimal_str(value)


def _m(value: Decimal | None) -> str | None:
    """A bill amount: sums of lines rounded to the minor unit keep its places (``149.00``)."""
    return None if value is None else str(value)


def _day(at: dt.datetime | None) -> str | None:
    return None if at is None else at.date().isoformat()


@dataclasses.dataclass
class Side:
    """One customer's sums under one variant."""

    bill: Decimal = ZERO
    cost: Decimal = ZERO
    unpriced: int = 0
    credits: Decimal = ZERO
    blocked: Decimal = ZERO
    exhausted: dt.datetime | None = None
    periods: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def add(self, figures: Figures, start: dt.datetime, end: dt.datetime) -> None:
        self.bill += figures.bill
        self.cost += figures.cost
        self.unpriced += figures.unpriced
        self.credits += figures.credits.consumed
        self.blocked += figures.blocked
        if figures.credits.exhausted_on is not None and self.exhausted is None:
            self.exhausted = figures.credits.exhausted_on
        self.periods.append(
            {
                "periodStart": start.isoformat(),
                "periodEnd": end.isoformat(),
                "planKey": figures.plan_key,
                "bill": _m(figures.bill),
                "cost": _s(figures.cost),
            }
        )

    @property
    def margin(self) -> Decimal:
        return self.bill - self.cost

    def band(self, target: Decimal) -> str:
        totals = Totals(cost=self.cost, revenue=self.bill, unpriced=self.unpriced)
        return band_of(totals, target).value

    def render(self, target: Decimal) -> dict[str, Any]:
        return {
            "bill": _m(self.bill),
            "cost": _s(self.cost),
            "unpricedEvents": self.unpriced,
            "margin": _s(self.margin),
            "marginPct": _s(_pct(self.margin, self.bill)),
            "creditsConsumed": _s(self.credits),
            "poolExhaustedOn": _day(self.exhausted),
            "blockedUnits": _s(self.blocked),
            "band": self.band(target),
            "periods": self.periods,
        }


def _flags(before: Side, after: Side, target: Decimal, shock: Decimal) -> list[str]:
    flags = []
    change_pct = _pct(after.bill - before.bill, before.bill)
    if (change_pct is not None and change_pct > shock) or (before.bill == 0 < after.bill):
        flags.append("bill_shock")
    if after.margin < 0 <= before.margin:
        flags.append("now_losing_money")
    if after.blocked > 0:
        flags.append("hits_cap")
    if before.band(target) != after.band(target):
        flags.append("crosses_band")
    return flags


@dataclasses.dataclass
class CustomerSides:
    reference: str
    currency: str
    sides: list[Side]


def by_customer(results: list[PeriodResult], variants: int) -> list[CustomerSides]:
    out: dict[Any, CustomerSides] = {}
    for result in results:
        sub = result.sp.subscription
        row = out.get(sub.customer_id)
        if row is None:
            row = CustomerSides(
                sub.customer.reference_id, result.sp.currency, [Side() for _ in range(variants)]
            )
            out[sub.customer_id] = row
        for side, figures in zip(row.sides, result.variants, strict=True):
            side.add(figures, result.sp.period.start, result.sp.period.end)
    return sorted(out.values(), key=lambda row: row.reference)


def _percentile(values: list[Decimal], pct: int) -> Decimal | None:
    """Nearest rank: the smallest value with at least ``pct`` % of the values at or below."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-pct * len(ordered) // 100))
    return ordered[rank - 1]


def _customer_after(
    row: CustomerSides, index: int, target: Decimal, shock: Decimal
) -> dict[str, Any]:
    before, after = row.sides[0], row.sides[index]
    change = after.bill - before.bill
    return {
        **after.render(target),
        "change": _m(change),
        "changePct": _s(_pct(change, before.bill)),
        "flags": _flags(before, after, target, shock),
    }


def _scenario_summary(
    name: str, rows: list[CustomerSides], index: int, target: Decimal, shock: Decimal
) -> dict[str, Any]:
    before = sum((row.sides[0].bill for row in rows), ZERO)
    after = sum((row.sides[index].bill for row in rows), ZERO)
    cost_before = sum((row.sides[0].cost for row in rows), ZERO)
    cost_after = sum((row.sides[index].cost for row in rows), ZERO)
    changes = [(row.sides[index].bill - row.sides[0].bill, row.reference) for row in rows]
    flags: dict[str, int] = defaultdict(int)
    at_risk = ZERO
    for row in rows:
        raised = _flags(row.sides[0], row.sides[index], target, shock)
        for flag in raised:
            flags[flag] += 1
        if "bill_shock" in raised:
            at_risk += row.sides[0].bill
    amounts = [change for change, _ref in changes]
    ranked = sorted(changes)
    return {
        "name": name,
        "totals": {
            "billBefore": _m(before),
            "billAfter": _m(after),
            "change": _m(after - before),
            "changePct": _s(_pct(after - before, before)),
            "costBefore": _s(cost_before),
            "costAfter": _s(cost_after),
            "marginBefore": _s(before - cost_before),
            "marginAfter": _s(after - cost_after),
            "marginPctBefore": _s(_pct(before - cost_before, before)),
            "marginPctAfter": _s(_pct(after - cost_after, after)),
        },
        "distribution": {f"p{p}": _m(_percentile(amounts, p)) for p in (10, 50, 90, 99)},
        "customers": {
            "up": sum(1 for c in amounts if c > 0),
            "down": sum(1 for c in amounts if c < 0),
            "unchanged": sum(1 for c in amounts if c == 0),
        },
        "topWinners": [
            {"customerReferenceId": ref, "change": _m(c)} for c, ref in ranked[:TOP] if c < 0
        ],
        "topLosers": [
            {"customerReferenceId": ref, "change": _m(c)}
            for c, ref in reversed(ranked[-TOP:])
            if c > 0
        ],
        "revenueAtRisk": _m(at_risk),
        "flags": dict(sorted(flags.items())),
    }


def reconciliation(
    results: list[PeriodResult], billed: dict[tuple, tuple[Decimal, Decimal]]
) -> dict[str, Any]:
    """The re-rated "before" of each period against what its invoices billed."""
    mismatches, matched, missing = [], 0, 0
    for result in results:
        sp = result.sp
        if sp.key not in billed:
            missing += 1
            continue
        invoiced, late = billed[sp.key]
        simulated = result.variants[0].bill
        if simulated == invoiced:
            matched += 1
            continue
        mismatches.append(
            {
                "customerReferenceId": sp.subscription.customer.reference_id,
                "subscriptionId": str(sp.subscription.pk),
                "periodStart": sp.period.start.isoformat(),
                "simulated": _m(simulated),
                "invoiced": _m(invoiced),
                "difference": _m(simulated - invoiced),
                "lateUsageBilled": _m(late),
                "reason": "late usage" if simulated == invoiced + late else "differs",
            }
        )
    return {
        "periods": len(results),
        "matched": matched,
        "notInvoiced": missing,
        "mismatchCount": len(mismatches),
        "mismatches": mismatches[:MISMATCHES_SHOWN],
    }


def build_result(
    inputs: SimulationInput,
    results: list[PeriodResult],
    billed: dict[tuple, tuple[Decimal, Decimal]],
    *,
    target: Decimal,
    price_at: dt.datetime,
) -> dict[str, Any]:
    variants = len(inputs.scenarios) + 1
    rows = by_customer(results, variants)
    if inputs.cohort.type == "band":
        rows = [row for row in rows if row.sides[0].band(target) == inputs.cohort.band]
        kept = {row.reference for row in rows}
        results = [r for r in results if r.sp.subscription.customer.reference_id in kept]
    shock = inputs.shock_pct
    return {
        "window": {"from": inputs.start.isoformat(), "to": inputs.end.isoformat()},
        "costsRepricedAt": price_at.isoformat(),
        "targetMarginPct": _s(target),
        "billShockThresholdPct": _s(shock),
        "customerCount": len(rows),
        "periodCount": len(results),
        "reconciliation": reconciliation(results, billed),
        "scenarios": [
            _scenario_summary(scenario.name, rows, index, target, shock)
            for index, scenario in enumerate(inputs.scenarios, start=1)
        ],
        "customers": [
            {
                "customerReferenceId": row.reference,
                "currency": row.currency,
                "before": row.sides[0].render(target),
                "scenarios": [
                    _customer_after(row, index, target, shock) for index in range(1, variants)
                ],
            }
            for row in rows
        ],
    }
