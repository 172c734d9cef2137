"""What goes on an invoice: line drafts computed from plans, periods and usage, no database.

Every amount here is exact (``Decimal`` in a 60-digit context; a prorated
fraction of seconds is the only division). A draft becomes an invoice line in
:mod:`apps.billing.services`, where :func:`apps.core.money.to_minor_units`
rounds it once; nothing is rounded in between, and the invoice total is the
sum of the rounded lines.

Usage of a feature in a period is priced on the period's total, by the rule of
the last plan of the period that prices the feature (graduated, volume and
package tiers apply to the total, never per event). Units beyond a cap are their
own line: at the overage price, or "not billed" under a hard cap. For a
credit-backed rule the usage was paid with credits at ingestion, so a "Credits
applied" line gives back the money value of the units the credits covered; units a
hard-limit pool could not cover (its shortfall) stay charged at the rule's price.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Mapping
from decimal import Context, Decimal, localcontext
from typing import TYPE_CHECKING, Any

from apps.core.money import decimal_str
from apps.core.money_format import format_number, format_price
from apps.plans import pricing
from apps.plans.models import PlanFeatureRule
from apps.plans.rendering import describe_rule
from apps.subscriptions.periods import day_start

from .models import EXACT_PLACES, InvoiceLine

if TYPE_CHECKING:
    from apps.features.models import Feature
    from apps.plans.models import Plan

    from .periods import Period, PlanSpan

ZERO = Decimal(0)
# Sums and products of stored amounts (24 digits each) are exact within 100 digits; only a
# prorated share (a division) is cut there, far below any currency's minor unit.
_PRECISE = Context(prec=100)
_EXACT_QUANTUM = Decimal(1).scaleb(-EXACT_PLACES)
WINDOWED = frozenset(
    {
        PlanFeatureRule.ResetInterval.DAY,
        PlanFeatureRule.ResetInterval.WEEK,
        PlanFeatureRule.ResetInterval.MONTH,
    }
)


@dataclasses.dataclass
class LineDraft:
    kind: str
    description: str
    service_start: dt.datetime
    service_end: dt.datetime
    amount_exact: Decimal
    feature_id: Any = None
    plan_id: Any = None
    quantity: Decimal | None = None
    units_total: Decimal | None = None
    units_beyond_cap: Decimal | None = None
    units_uncovered: Decimal | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def stored_exact(self) -> Decimal:
        """The exact amount as stored (30 places; a repeating fraction is cut there,
        far below the minor unit the line is rounded to)."""
        with localcontext(_PRECISE):
            return self.amount_exact.quantize(_EXACT_QUANTUM)


def _microseconds(delta: dt.timedelta) -> int:
    return delta // dt.timedelta(microseconds=1)


def prorate(amount: Decimal, part: dt.timedelta, whole: dt.timedelta) -> Decimal:
    """``amount x part / whole`` with one division in a 60-digit context."""
    whole_us = _microseconds(whole)
    if whole_us <= 0:
        return ZERO
    with localcontext(_PRECISE):
        return amount * Decimal(_microseconds(part)) / Decimal(whole_us)


def pricing_rule_of(rule_row: PlanFeatureRule) -> pricing.Rule:
    """The row's pure rule, built once per row object (a run prices thousands of lines
    with the same few rows)."""
    cached = getattr(rule_row, "_billing_rule", None)
    if cached is None:
        cached = rule_row.pricing_rule()
        rule_row._billing_rule = cached  # type: ignore[attr-defined]
    return cached


def _day(at: dt.datetime) -> str:
    return f"{at:%b} {at.day}, {at.year}"


@functools.lru_cache(maxsize=4096)
def span_text(start: dt.datetime, end: dt.datetime) -> str:
    return f"{_day(start)} \u2013 {_day(end)}"  # an en dash


def _label(feature: Feature) -> str:
    return feature.name or feature.key


def _unit(feature: Feature) -> str:
    return feature.unit_label.strip() or "units"


# -- base fee -----------------------------------------------------------------------------


def base_in_advance(plan: Plan, start: dt.datetime, end: dt.datetime) -> LineDraft:
    """The whole period's base fee, charged at its start."""
    return LineDraft(
        kind=InvoiceLine.Kind.BASE,
        description=f"Plan base price: {plan.name} ({span_text(start, end)})"[:255],
        service_start=start,
        service_end=end,
        amount_exact=plan.price_amount,
        plan_id=plan.pk,
        quantity=Decimal(1),
        details={"plan": plan.key, "price": decimal_str(plan.price_amount)},
    )


def base_in_arrears(period: Period) -> list[LineDraft]:
    """The base fee of each plan for the part of the period it was in force (a full
    period on one plan is one line at the plan's price)."""
    length = period.natural_end - period.start
    lines = []
    for span in period.spans:
        part = span.end - span.start
        if part <= dt.timedelta(0):
            continue
        plan = span.plan
        whole = part == length
        amount = plan.price_amount if whole else prorate(plan.price_amount, part, length)
        text = f"Plan base price: {plan.name} ({span_text(span.start, span.end)})"
        details: dict[str, Any] = {"plan": plan.key, "price": decimal_str(plan.price_amount)}
        if not whole:
            details["fraction"] = f"{_microseconds(part)}/{_microseconds(length)}"
            text += f", {_percent(part, length)} of the period"
        lines.append(
            LineDraft(
                kind=InvoiceLine.Kind.BASE,
                description=text[:255],
                service_start=span.start,
                service_end=span.end,
                amount_exact=amount,
                plan_id=plan.pk,
                quantity=Decimal(1),
                details=details,
            )
        )
    return lines


def _percent(part: dt.timedelta, whole: dt.timedelta) -> str:
    share = prorate(Decimal(100), part, whole)
    return f"{format_number(share.quantize(Decimal('0.01')))}%"


# -- usage --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UsageFigures:
    """One feature's usage in one period: all units, those beyond the cap, and (a
    credit-backed rule) those a hard-limit credit pool did not cover."""

    units: Decimal
    beyond: Decimal
    uncovered: Decimal = ZERO

    @property
    def within(self) -> Decimal:
        with localcontext(_PRECISE):
            return self.units - self.beyond

    @property
    def covered(self) -> Decimal:
        """Units paid with credits: all but those a hard-limit pool did not cover."""
        with localcontext(_PRECISE):
            return max(self.units - min(self.uncovered, self.units), ZERO)


def _window_start(reset_interval: str, day: dt.datetime) -> dt.datetime:
    if reset_interval == PlanFeatureRule.ResetInterval.DAY:
        return day
    if reset_interval == PlanFeatureRule.ResetInterval.WEEK:
        return day - dt.timedelta(days=day.weekday())
    return day.replace(day=1)


def window_lookback(reset_interval: str, period_start: dt.datetime) -> dt.datetime:
    """Where the cap window containing the period's start began (usage from there on
    counts towards the first window's cap)."""
    return _window_start(reset_interval, day_start(period_start))


def usage_figures(
    rule_row: PlanFeatureRule,
    *,
    units: Decimal,
    period_start: dt.datetime,
    used_before: Decimal = ZERO,
    daily: Mapping[dt.datetime, Decimal] | None = None,
) -> UsageFigures:
    """Split a period's ``units`` into within / beyond the rule's cap.

    ``used_before``: for a cap that never resets, the units used since the
    subscription started up to the period. ``daily``: for a cap that resets
    each day, week or month, the units per UTC day from the start of the window
    containing the period's start to the period's end.
    """
    rule = pricing_rule_of(rule_row)
    if rule.max_usage is None or units == 0:
        return UsageFigures(units, ZERO)
    reset = rule_row.reset_interval
    if reset == PlanFeatureRule.ResetInterval.NEVER:
        return UsageFigures(units, pricing.cap_split(rule, used_before, units)[1])
    if reset not in WINDOWED:
        return UsageFigures(units, pricing.cap_split(rule, ZERO, units)[1])
    # Per cap window: the units before the period count towards the cap, not the bill.
    before: dict[dt.datetime, Decimal] = {}
    inside: dict[dt.datetime, Decimal] = {}
    beyond = ZERO
    with localcontext(_PRECISE):
        for day, amount in sorted((daily or {}).items()):
            window = _window_start(reset, day)
            target = before if day < day_start(period_start) else inside
            target[window] = target.get(window, ZERO) + amount
        for window, amount in inside.items():
            beyond += pricing.cap_split(rule, before.get(window, ZERO), amount)[1]
    # Units of a partial first day (a period starting mid-day) are in ``inside``.
    return UsageFigures(units, min(beyond, units))


@dataclasses.dataclass(frozen=True)
class UsageAmounts:
    usage: Decimal  # the model's charge for the units within the cap
    overage: Decimal  # units beyond the cap at the overage price (0 under a hard cap)

    @property
    def total(self) -> Decimal:
        with localcontext(_PRECISE):
            return self.usage + self.overage


def usage_amounts(rule_row: PlanFeatureRule, figures: UsageFigures) -> UsageAmounts:
    rule = pricing_rule_of(rule_row)
    usage = pricing.usage_charge(rule, figures.within)
    with localcontext(_PRECISE):
        overage = figures.beyond * (rule.overage_unit_price or ZERO)
    return UsageAmounts(usage, overage)


def covered_value(rule_row: PlanFeatureRule, figures: UsageFigures) -> Decimal:
    """The money value of the units credits paid for: the rule's charge (usage and
    overage) for the period's first ``figures.covered`` units. All of the usage when
    nothing is uncovered; what is left of the charge is the uncovered units' part.

    Graduated, volume and package prices are not linear, so the uncovered units are
    taken as the period's last (the pool ran dry, later usage found nothing), and the
    cap's "beyond" units as the last of the covered ones."""
    if figures.uncovered <= 0:
        return usage_amounts(rule_row, figures).total
    covered = figures.covered
    with localcontext(_PRECISE):
        beyond = max(covered - figures.within, ZERO)
    return usage_amounts(rule_row, UsageFigures(covered, beyond)).total


def charged_in_money(rule_row: PlanFeatureRule, figures: UsageFigures) -> Decimal:
    """What the period's usage costs in money after credits: everything for a rule not
    backed by credits; for a credit-backed one, the uncovered units' part."""
    total = usage_amounts(rule_row, figures).total
    if not rule_row.is_credit_backed:
        return total
    with localcontext(_PRECISE):
        return total - covered_value(rule_row, figures)


def usage_lines(
    rule_row: PlanFeatureRule,
    feature: Feature,
    plan: Plan,
    figures: UsageFigures,
    *,
    start: dt.datetime,
    end: dt.datetime,
) -> list[LineDraft]:
    """The usage line (carrying the billed snapshot), an overage line when units went
    beyond the cap, and a credits line for a credit-backed rule: the value of the units
    the credits covered given back, so the units a hard-limit pool could not cover stay
    charged at the rule's price."""
    rule = pricing_rule_of(rule_row)
    amounts = usage_amounts(rule_row, figures)
    credit_backed = rule_row.is_credit_backed
    currency = plan.currency
    unit = _unit(feature)
    summary = describe_rule(
        rule, unit_label=unit, currency=currency, reset_interval=rule_row.reset_interval
    )
    common: dict[str, Any] = {"feature_id": feature.pk, "plan_id": plan.pk, "service_start": start}
    lines = [
        LineDraft(
            kind=InvoiceLine.Kind.USAGE,
            description=(
                f"{_label(feature)}: {format_number(figures.within)} {unit} "
                f"({span_text(start, end)})"
                f" — {summary}"
            )[:255],
            service_end=end,
            amount_exact=amounts.usage,
            quantity=figures.within,
            units_total=figures.units,
            units_beyond_cap=figures.beyond,
            units_uncovered=figures.uncovered if credit_backed else None,
            details={
                "model": rule_row.model,
                "pricing": summary,
                "units": decimal_str(figures.units),
                "withinCap": decimal_str(figures.within),
                "beyondCap": decimal_str(figures.beyond),
                **({"uncoveredByCredits": decimal_str(figures.uncovered)} if credit_backed else {}),
            },
            **common,
        )
    ]
    if figures.beyond > 0:
        price = rule.overage_unit_price
        text = (
            f"{_label(feature)}: {format_number(figures.beyond)} {unit} beyond the cap of "
            f"{format_number(rule.max_usage or ZERO)}"
        )
        text += f" at {format_price(price, currency)}" if price is not None else " (not billed)"
        lines.append(
            LineDraft(
                kind=InvoiceLine.Kind.OVERAGE,
                description=text[:255],
                service_end=end,
                amount_exact=amounts.overage,
                quantity=figures.beyond,
                details={"overagePrice": decimal_str(price) if price is not None else None},
                **common,
            )
        )
    if credit_backed and amounts.total != 0:
        denomination = rule_row.credit_denomination
        text = f"Credits applied: {_label(feature)} paid with {denomination} credits"
        details: dict[str, Any] = {"denomination": denomination}
        if figures.uncovered > 0:
            uncovered = min(figures.uncovered, figures.units)
            text += (
                f" ({format_number(figures.covered)} of {format_number(figures.units)} {unit}); "
                f"{format_number(uncovered)} {unit} not covered by credits, "
                "charged at the plan's price"
            )
            details |= {
                "coveredUnits": decimal_str(figures.covered),
                "uncoveredUnits": decimal_str(uncovered),
            }
        lines.append(
            LineDraft(
                kind=InvoiceLine.Kind.CREDITS,
                description=text[:255],
                service_end=end,
                amount_exact=covered_value(rule_row, figures).copy_negate(),
                quantity=figures.covered,
                details=details,
                **common,
            )
        )
    return lines


def late_usage_line(
    rule_row: PlanFeatureRule,
    feature: Feature,
    plan: Plan,
    *,
    billed: UsageFigures,
    current: UsageFigures,
    start: dt.datetime,
    end: dt.datetime,
) -> LineDraft:
    """The difference between a closed period's usage now and what its invoice billed:
    what the period's usage costs in money now less what it cost then (for a
    credit-backed rule, only the units credits did not cover are paid in money)."""
    then, now = charged_in_money(rule_row, billed), charged_in_money(rule_row, current)
    credit_backed = rule_row.is_credit_backed
    with localcontext(_PRECISE):
        amount = now - then
        extra = current.units - billed.units
        extra_beyond = current.beyond - billed.beyond
        extra_uncovered = current.uncovered - billed.uncovered
    unit = _unit(feature)
    text = (
        f"Adjustment for late usage: {_label(feature)}, {span_text(start, end)}: "
        f"{'+' if extra >= 0 else ''}{format_number(extra)} {unit} "
        f"(billed {format_number(billed.units)}, now {format_number(current.units)})"
    )
    if credit_backed:
        text += f", paid with {rule_row.credit_denomination} credits"
        if extra_uncovered != 0:
            text += f" except {format_number(extra_uncovered)} {unit} not covered by credits"
    details = {
        "billedUnits": decimal_str(billed.units),
        "currentUnits": decimal_str(current.units),
        "billedAmount": decimal_str(then),
        "currentAmount": decimal_str(now),
    }
    if credit_backed:
        details |= {
            "billedUncoveredUnits": decimal_str(billed.uncovered),
            "currentUncoveredUnits": decimal_str(current.uncovered),
        }
    return LineDraft(
        kind=InvoiceLine.Kind.LATE_USAGE,
        description=text[:255],
        service_start=start,
        service_end=end,
        amount_exact=amount,
        feature_id=feature.pk,
        plan_id=plan.pk,
        quantity=extra,
        units_total=extra,
        units_beyond_cap=extra_beyond,
        units_uncovered=extra_uncovered if credit_backed else None,
        details=details,
    )


# -- plan changes and cancellations -------------------------------------------------------


def proration_lines(
    old: Plan, new: Plan, *, at: dt.datetime, period_start: dt.datetime, period_end: dt.datetime
) -> list[LineDraft]:
    """An in-advance switch inside a paid period: the old plan's unused part back, the new
    plan's price for the rest of the period (``remaining / period length`` of each)."""
    length, remaining = period_end - period_start, max(period_end - at, dt.timedelta(0))
    fraction = f"{_microseconds(remaining)}/{_microseconds(length)}"
    share = _percent(remaining, length)
    return [
        LineDraft(
            kind=InvoiceLine.Kind.PRORATION,
            description=(
                f"Credit from old plan: {old.name}, unused {share} ({span_text(at, period_end)})"
            )[:255],
            service_start=at,
            service_end=period_end,
            amount_exact=prorate(old.price_amount, remaining, length).copy_negate(),
            plan_id=old.pk,
            details={"plan": old.key, "price": decimal_str(old.price_amount), "fraction": fraction},
        ),
        LineDraft(
            kind=InvoiceLine.Kind.PRORATION,
            description=(
                f"Plan {new.name} for the rest of the period, {share} ({span_text(at, period_end)})"
            )[:255],
            service_start=at,
            service_end=period_end,
            amount_exact=prorate(new.price_amount, remaining, length),
            plan_id=new.pk,
            details={"plan": new.key, "price": decimal_str(new.price_amount), "fraction": fraction},
        ),
    ]


def unused_credit_line(
    plan: Plan, *, at: dt.datetime, period_start: dt.datetime, period_end: dt.datetime, text: str
) -> LineDraft:
    """Give back the unused part of a base fee paid in advance (``at`` -> period end)."""
    length, remaining = period_end - period_start, max(period_end - at, dt.timedelta(0))
    return LineDraft(
        kind=InvoiceLine.Kind.CANCELLATION,
        description=(
            f"{text}: {plan.name}, unused {_percent(remaining, length)} "
            f"({span_text(at, period_end)})"
        )[:255],
        service_start=at,
        service_end=period_end,
        amount_exact=prorate(plan.price_amount, remaining, length).copy_negate(),
        plan_id=plan.pk,
        details={
            "plan": plan.key,
            "price": decimal_str(plan.price_amount),
            "fraction": f"{_microseconds(remaining)}/{_microseconds(length)}",
        },
    )


def rules_by_feature(
    spans: tuple[PlanSpan, ...], rules_of: Mapping[Any, list[PlanFeatureRule]]
) -> dict[Any, tuple[PlanFeatureRule, Plan]]:
    """Each feature priced in the period -> the rule of the last plan of the period that
    prices it (and that plan)."""
    out: dict[Any, tuple[PlanFeatureRule, Plan]] = {}
    for span in spans:
        for rule_row in rules_of.get(span.plan.pk, []):
            out[rule_row.feature_id] = (rule_row, span.plan)
    return out


def plan_change_lines(
    old: Plan, new: Plan, *, at: dt.datetime, period_start: dt.datetime, period_end: dt.datetime
) -> tuple[dt.datetime, list[LineDraft]]:
    """The lines of an immediate switch inside a paid (in-advance) period, and where the
    invoice's period starts: with the same interval, the old plan's unused part back and the
    new plan's price for the rest (:func:`proration_lines`); with another interval a new
    period starts (billed as such), so only the old plan's rest comes back.

    The billing cycle's proration draft and the dashboard's preview of a plan change both
    take their lines from here."""
    if old.interval_months == new.interval_months:
        return at, proration_lines(
            old, new, at=at, period_start=period_start, period_end=period_end
        )
    start = max(day_start(at), period_start)
    return start, [
        unused_credit_line(
            old,
            at=start,
            period_start=period_start,
            period_end=period_end,
            text=f"Credit from old plan (switched to {new.name})",
        )
    ]
