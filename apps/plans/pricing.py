"""Pricing math of a plan's rule for one feature: pure functions on ``Decimal``, no database.

A :class:`Rule` says how usage of one feature is charged inside a billing period:

* ``included``: access only, usage costs nothing (``0``);
* ``per_unit``: ``units * pricePerUnit``;
* ``graduated``: tiers filled in order; each tier charges the units that fall in
  its range at its own price, plus its flat fee if usage entered the tier;
* ``volume``: *all* units at the price of the tier the total falls in, plus that
  tier's flat fee;
* ``package``: ``ceil(units / packageSize) * pricePerUnit`` (the price of one block).

A tier covers ``(previous upTo, upTo]``; ``upTo`` ``None`` is unbounded (the last
tier). Usage exactly at a tier's ``upTo`` stays in that tier; "entering" a tier
means using more than the previous tier's ``upTo``. Zero units cost zero in
every model (no flat fee for a tier never entered).

A usage cap (``max_usage``) counts units in its own reset window (the billing
period by default). Units beyond the cap are charged at ``overage_unit_price``
when the rule has one; without it the cap is *hard*: units beyond it are not
billed (the entitlement check refuses them and ingestion flags them).

Every amount is exact: arithmetic runs in a 100-digit context that traps
inexact results, so nothing is rounded here. Invoices round once per line
(``apps.core.money.to_minor_units``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Sequence
from decimal import (
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)

ZERO = Decimal(0)

# Stored columns are DECIMAL(24, 12): at most 12 digits either side of the point.
MAX_FRACTION_DIGITS = 12
MAX_INTEGER_DIGITS = 12
MAX_TIERS = 50

# Products of two 24-digit numbers need 48 digits; 100 leaves room for sums.
_EXACT = Context(
    prec=100, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact], Emin=-999, Emax=999
)


class PricingModel(enum.StrEnum):
    INCLUDED = "included"
    PER_UNIT = "per_unit"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PACKAGE = "package"


TIERED = frozenset({PricingModel.GRADUATED, PricingModel.VOLUME})
# Models whose charge for more units depends on how many came before (the rest charge in
# proportion to the units: per_unit, and included at nothing).
POSITIONAL = frozenset({*TIERED, PricingModel.PACKAGE})
LINEAR = frozenset(PricingModel) - POSITIONAL


@dataclasses.dataclass(frozen=True, slots=True)
class Tier:
    up_to: Decimal | None  # None: unbounded
    unit_price: Decimal
    flat_fee: Decimal = ZERO


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """The money side of a plan * feature rule (prices in the plan's currency)."""

    model: PricingModel
    unit_price: Decimal | None = None  # per_unit: per unit; package: per block
    package_size: int | None = None  # package: units per block (≥ 1)
    tiers: tuple[Tier, ...] = ()  # graduated, volume
    max_usage: Decimal | None = None  # cap per reset window; None: no cap
    overage_unit_price: Decimal | None = None  # per unit beyond the cap

    @property
    def has_cap(self) -> bool:
        return self.max_usage is not None

    @property
    def is_hard_capped(self) -> bool:
        """A cap without an overage price: usage beyond it is refused, not billed."""
        return self.max_usage is not None and self.overage_unit_price is None


# -- validation ---------------------------------------------------------------------------


def amount_problem(value: Decimal, *, positive: bool = False) -> str | None:
    """Why ``value`` cannot be stored as a price or unit count (``None`` if it can)."""
    if not value.is_finite():
        return "Must be a finite number."
    if value < 0 or (positive and value == 0):
        return "Must be greater than 0." if positive else "May not be negative."
    _sign, digits, exponent = value.normalize().as_tuple()
    fraction = max(0, -int(exponent))
    integer = max(0, len(digits) + int(exponent))
    if fraction > MAX_FRACTION_DIGITS:
        return f"At most {MAX_FRACTION_DIGITS} decimal places."
    if integer > MAX_INTEGER_DIGITS:
        return f"At most {MAX_INTEGER_DIGITS} digits before the decimal point."
    return None


def rule_errors(rule: Rule) -> dict[str, list[str]]:
    """Problems with ``rule``, keyed by the API's field names (empty when valid).

    Keys: ``model``, ``pricePerUnit``, ``packageSize``, ``tiers``,
    ``tiers.<i>.upTo``, ``tiers.<i>.pricePerUnit``, ``tiers.<i>.flatFee``,
    ``maxUsage``, ``overagePricePerUnit``.
    """
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    def check(field: str, value: Decimal | None, *, positive: bool = False) -> None:
        if value is not None and (problem := amount_problem(value, positive=positive)):
            add(field, problem)

    try:
        model = PricingModel(rule.model)
    except ValueError:
        add("model", f"One of {', '.join(m.value for m in PricingModel)}.")
        return errors

    needs_price = model in {PricingModel.PER_UNIT, PricingModel.PACKAGE}
    if needs_price and rule.unit_price is None:
        add("pricePerUnit", f"Required for the {model} model.")
    if not needs_price and rule.unit_price is not None:
        add("pricePerUnit", f"Not used by the {model} model.")
    check("pricePerUnit", rule.unit_price)

    if model == PricingModel.PACKAGE:
        if rule.package_size is None:
            add("packageSize", "Required for the package model.")
        elif isinstance(rule.package_size, bool) or not isinstance(rule.package_size, int):
            add("packageSize", "Must be a whole number.")
        elif not 1 <= rule.package_size <= 10**MAX_INTEGER_DIGITS:
            add("packageSize", "Must be at least 1.")
    elif rule.package_size is not None:
        add("packageSize", f"Not used by the {model} model.")

    if model in TIERED:
        _tier_errors(rule.tiers, add, check)
    elif rule.tiers:
        add("tiers", f"Not used by the {model} model.")

    check("maxUsage", rule.max_usage, positive=True)
    check("overagePricePerUnit", rule.overage_unit_price)
    if rule.overage_unit_price is not None and rule.max_usage is None:
        add("overagePricePerUnit", "An overage price needs a maxUsage cap to start from.")
    return errors


def _tier_errors(
    tiers: Sequence[Tier],
    add: Callable[[str, str], None],
    check: Callable[..., None],
) -> None:
    if not tiers:
        add("tiers", "At least one tier is required.")
        return
    if len(tiers) > MAX_TIERS:
        add("tiers", f"At most {MAX_TIERS} tiers.")
        return
    previous = ZERO
    last = len(tiers) - 1
    for index, tier in enumerate(tiers):
        field = f"tiers.{index}"
        check(f"{field}.pricePerUnit", tier.unit_price)
        check(f"{field}.flatFee", tier.flat_fee)
        if tier.up_to is None:
            if index != last:
                add(f"{field}.upTo", "Only the last tier may be unbounded.")
            continue
        if index == last:
            add(f"{field}.upTo", 'The last tier must be unbounded (upTo null or "inf").')
        if amount_problem(tier.up_to, positive=True) is not None:
            check(f"{field}.upTo", tier.up_to, positive=True)
        elif tier.up_to <= previous:
            add(f"{field}.upTo", "Must be greater than the previous tier's upTo.")
        else:
            previous = tier.up_to


# -- charges ------------------------------------------------------------------------------


def _non_negative(name: str, value: Decimal) -> None:
    if value < 0:
        raise ValueError(f"{name} may not be negative (got {value})")


def usage_charge(rule: Rule, units: Decimal) -> Decimal:
    """The pricing model alone applied to ``units`` used in one period (no cap, no overage)."""
    _non_negative("units", units)
    with localcontext(_EXACT):
        if units == 0 or rule.model == PricingModel.INCLUDED:
            return ZERO
        if rule.model == PricingModel.PER_UNIT:
            return units * _required(rule.unit_price)
        if rule.model == PricingModel.PACKAGE:
            size = Decimal(_required(rule.package_size))
            blocks, rest = divmod(units, size)
            return (blocks + (1 if rest else 0)) * _required(rule.unit_price)
        if rule.model == PricingModel.GRADUATED:
            return _graduated(rule.tiers, units)
        if rule.model == PricingModel.VOLUME:
            return _volume(rule.tiers, units)
    raise ValueError(f"unknown pricing model {rule.model!r}")


def _required[T](value: T | None) -> T:
    if value is None:
        raise ValueError("the rule lacks a value its model needs (validate it first)")
    return value


def _graduated(tiers: Sequence[Tier], units: Decimal) -> Decimal:
    total = ZERO
    lower = ZERO
    for tier in tiers:
        if units <= lower:
            return total
        upper = units if tier.up_to is None else min(units, tier.up_to)
        total += (upper - lower) * tier.unit_price + tier.flat_fee
        if tier.up_to is None:
            return total
        lower = tier.up_to
    if units > lower:
        raise ValueError("usage beyond the last tier (its upTo must be unbounded)")
    return total


def _volume(tiers: Sequence[Tier], units: Decimal) -> Decimal:
    for tier in tiers:
        if tier.up_to is None or units <= tier.up_to:
            return units * tier.unit_price + tier.flat_fee
    raise ValueError("usage beyond the last tier (its upTo must be unbounded)")


def cap_split(rule: Rule, window_used_before: Decimal, units: Decimal) -> tuple[Decimal, Decimal]:
    """Of ``units`` added to a cap window that already holds ``window_used_before``:
    how many are within the cap and how many beyond it. No cap: all within."""
    _non_negative("units", units)
    _non_negative("window_used_before", window_used_before)
    if rule.max_usage is None:
        return units, ZERO
    with localcontext(_EXACT):
        room = max(rule.max_usage - window_used_before, ZERO)
        within = min(units, room)
        return within, units - within


def charge(rule: Rule, units: Decimal, *, overage_units: Decimal | None = None) -> Decimal:
    """What ``units`` used in one billing period cost under ``rule``.

    ``overage_units``: how many of those units fell beyond the cap in their cap
    window. Left out, the cap window is taken to be the billing period (the
    default reset interval): ``max(units - maxUsage, 0)``. Units within the cap are
    priced by the model; units beyond it at the overage price, or at nothing
    when the cap is hard.
    """
    _non_negative("units", units)
    if overage_units is None:
        overage_units = cap_split(rule, ZERO, units)[1]
    if not ZERO <= overage_units <= units:
        raise ValueError("overage_units must lie between 0 and units")
    with localcontext(_EXACT):
        beyond = overage_units * (rule.overage_unit_price or ZERO)
        return usage_charge(rule, units - overage_units) + beyond


def marginal_charge(
    rule: Rule,
    used_before: Decimal,
    units: Decimal,
    *,
    window_used_before: Decimal | None = None,
) -> Decimal:
    """What ``units`` more cost, given ``used_before`` units already used this period.

    This is the revenue of one event at ingestion. With the cap window equal to
    the billing period (``window_used_before`` left out) it is exactly
    ``charge(used_before + units) - charge(used_before)``, so the marginal
    charges of a period's events add up to the period's charge.

    For a cap with another reset interval (day, week, month, never), pass
    ``window_used_before`` (units already in the cap's current window); then
    ``used_before`` is the period's units *within* caps (what the tiers count)
    and the event's units beyond the cap are charged at the overage price.
    """
    _non_negative("used_before", used_before)
    if rule.max_usage is None and rule.model in LINEAR:
        # Linear and uncapped: the position does not matter (the common hot path:
        # the same as the general formula below, without pricing the period twice).
        _non_negative("units", units)
        if rule.model == PricingModel.INCLUDED or units == 0:
            return ZERO
        with localcontext(_EXACT):
            return units * _required(rule.unit_price)
    if window_used_before is None:
        with localcontext(_EXACT):
            return charge(rule, used_before + units) - charge(rule, used_before)
    within, beyond = cap_split(rule, window_used_before, units)
    with localcontext(_EXACT):
        tiered = usage_charge(rule, used_before + within) - usage_charge(rule, used_before)
        return tiered + beyond * (rule.overage_unit_price or ZERO)
