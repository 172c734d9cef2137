"""Which units of an event its credits paid for: the one definition.

Billing (an invoice's credit-backed usage lines) and the Stripe meter step (the units
sent to Stripe) both ask "how many of this event's units did credits not cover?". Both
answer with :func:`uncovered_units`, from a :class:`Coverage`:

* no coverage at all (``None``: the feature is not credit-backed, or nothing could be
  charged, e.g. no credit model for the denomination): every unit is uncovered;
* otherwise the event cost ``deducted + shortfall`` credits, of which ``shortfall`` (a
  hard-limit pool's refusal) and ``debt`` (the part of ``deducted`` that took a
  soft-limit pool below zero) are not covered; the units uncovered are in the same
  proportion, rounded half-up to 12 places (the ledger's unit scale). Usage that cost
  no credits (zero units, or a weight of 0) is covered.

``debt`` is where the two callers differ on purpose, and they say so: the Stripe meter
step counts a soft pool's debt as uncovered (the deduction result tells it how much);
billing reads coverage back from the event's flags, which record only a hard pool's
shortfall, so for billing a soft pool covers everything, its debt included (the next
credits pay it; docs/credits.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import TYPE_CHECKING, Any

from apps.events.flags import EventFlags

if TYPE_CHECKING:
    from apps.core.errors import TansoError

    from .services import DeductionResult

ZERO = Decimal(0)
UNITS_QUANTUM = Decimal(1).scaleb(-12)
# Units have 24 digits and credits 6 places: 60 digits keep the proportion exact past the
# 12th place before it is rounded there.
_PRECISION = 60


@dataclass(frozen=True, slots=True)
class Coverage:
    """What credits did for one event's usage, in credits."""

    deducted: Decimal  # taken from the pool
    shortfall: Decimal = ZERO  # refused by a hard-limit pool
    debt: Decimal = ZERO  # of ``deducted``, what took a soft-limit pool below zero

    @classmethod
    def from_flags(cls, flags: EventFlags) -> Coverage | None:
        """From a stored event's flags: None when it was stamped with a credit error (no
        charge); a soft pool's debt is not recorded there (see the module docstring)."""
        if flags.credit_error is not None:
            return None
        return cls(deducted=flags.credit_deducted or ZERO, shortfall=flags.credit_shortfall or ZERO)

    @classmethod
    def from_deduction(cls, result: DeductionResult) -> Coverage | None:
        """From a usage deduction: None when the customer had no pool (nothing paid)."""
        if result.pool is None or result.balance_after is None:
            return None
        return cls(
            deducted=result.deducted,
            shortfall=result.shortfall,
            debt=max(ZERO, -result.balance_after),
        )


def uncovered_units(units: Decimal, coverage: Coverage | None) -> Decimal:
    """The units of one event (``units`` of usage) that its credits did not pay for."""
    if units <= 0:
        return ZERO
    if coverage is None:
        return units
    credits = coverage.deducted + coverage.shortfall
    if credits <= 0:
        return ZERO
    uncovered = coverage.shortfall + min(coverage.deducted, max(ZERO, coverage.debt))
    if uncovered <= 0:
        return ZERO
    if uncovered >= credits:
        return units
    # One context whatever the caller's: the same event gives the same units everywhere.
    with localcontext(prec=_PRECISION):
        return (units * uncovered / credits).quantize(UNITS_QUANTUM, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class CreditCharge:
    """The ingestion pipeline's result for one stored event of a credit-backed feature:
    the deduction made, or the error that left it uncharged (exactly one of the two)."""

    denomination: str
    deduction: DeductionResult | None = None
    error: TansoError | None = None

    def coverage(self) -> Coverage | None:
        return None if self.deduction is None else Coverage.from_deduction(self.deduction)

    def answer_fields(self) -> dict[str, Any]:
        if self.deduction is None:
            assert self.error is not None
            return {"creditError": {"code": self.error.code, "message": self.error.message}}
        fields = self.deduction.response_fields()
        fields["creditDenomination"] = self.denomination
        return fields
