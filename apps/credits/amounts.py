"""Credit amounts: exact ``Decimal`` with six fractional digits, rounded in one place.

* Credits (grants, ledger amounts, balances): 24 digits, 6 after the point.
* Weights (credits per usage unit): at most 1,000,000 with 6 fractional digits.
* Price book: currency per credit with 12 fractional digits (a credit can cost
  a fraction of a cent).

A deduction is ``usage units x weight``; the product can carry up to 18
fractional digits and is rounded once, half to even, by :func:`quantize_credits`.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

CREDIT_MAX_DIGITS = 24
CREDIT_DECIMAL_PLACES = 6
CREDIT_QUANTUM = Decimal(1).scaleb(-CREDIT_DECIMAL_PLACES)
ZERO = Decimal(0)

WEIGHT_MAX_DIGITS = 13
WEIGHT_DECIMAL_PLACES = 6
WEIGHT_MAX = Decimal(1_000_000)

PRICE_MAX_DIGITS = 24
PRICE_DECIMAL_PLACES = 12

# Usage units as events store them (apps.events: 24 digits, 12 fractional).
UNITS_MAX_DIGITS = 24
UNITS_DECIMAL_PLACES = 12


def credit_field_kwargs(**extra: Any) -> dict[str, Any]:
    return {"max_digits": CREDIT_MAX_DIGITS, "decimal_places": CREDIT_DECIMAL_PLACES, **extra}


def quantize_credits(value: Decimal) -> Decimal:
    """The one rounding step for credits: 6 fractional digits, half to even."""
    return value.quantize(CREDIT_QUANTUM, rounding=ROUND_HALF_EVEN)
