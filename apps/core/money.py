"""Exact money. `Decimal` everywhere; one place that rounds.

* Event cost and revenue: ``Decimal`` with 12 fractional digits (``USD_EVENT``).
* Invoices: integer minor units plus the currency, rounded once per line by
  :func:`to_minor_units`.
* On the wire: decimal strings without exponent or trailing zeros (``"0.0075"``).
"""

from __future__ import annotations

import functools
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from iso4217 import Currency

# Fractional digits kept for per-event amounts (cost, revenue) in USD.
EVENT_DECIMAL_PLACES = 12
EVENT_MAX_DIGITS = 24
USD_EVENT = Decimal(1).scaleb(-EVENT_DECIMAL_PLACES)


class UnknownCurrency(ValueError):
    """Not an ISO 4217 currency with a minor unit (a typo, a metal such as XAU, XXX)."""


@functools.cache
def currency_exponent(currency: str) -> int:
    """The currency's minor unit from ISO 4217 (the ``iso4217`` package, the maintenance
    agency's published table): 2 for USD, 0 for JPY, 3 for KWD, 4 for CLF.

    Raises :class:`UnknownCurrency` rather than guess: a guessed exponent would invoice
    a zero-decimal currency 100 times too much.
    """
    try:
        exponent = Currency(currency.upper()).exponent
    except ValueError:
        raise UnknownCurrency(f"{currency!r} is not an ISO 4217 currency code") from None
    if exponent is None:
        raise UnknownCurrency(f"{currency!r} has no minor unit (not a money currency)")
    return exponent


def is_currency(currency: str) -> bool:
    """Whether ``currency`` is an ISO 4217 code that money can be stated in."""
    try:
        currency_exponent(currency)
    except UnknownCurrency:
        return False
    return True


def quantize_event_amount(value: Decimal) -> Decimal:
    """Round a per-event USD amount to the stored precision (12 places)."""
    return value.quantize(USD_EVENT, rounding=ROUND_HALF_EVEN)


def to_minor_units(amount: Decimal, currency: str) -> int:
    """The one rounding helper for invoice lines: major units -> integer minor units.

    Banker's rounding (half to even), applied once per invoice line.
    """
    exponent = currency_exponent(currency)
    return int((amount.scaleb(exponent)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def from_minor_units(amount_minor: int, currency: str) -> Decimal:
    """Integer minor units -> the exact amount in major units (``1999`` USD -> ``19.99``)."""
    return Decimal(amount_minor).scaleb(-currency_exponent(currency))


def decimal_str(value: Decimal) -> str:
    """Plain decimal string: no exponent, no trailing zeros (``0.007500`` -> ``"0.0075"``)."""
    if not value.is_finite():
        raise ValueError("non-finite decimal")
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in {"-0", ""}:
        text = "0"
    return text


def parse_decimal(value: object) -> Decimal:
    """A request amount (number or string) -> finite Decimal; ValueError otherwise.

    Floats are refused: request bodies are parsed with decimals, so a float here
    means a caller bypassed the parser and precision may already be lost.
    """
    if isinstance(value, bool | float):
        raise ValueError("not an exact decimal")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError("not a number") from None
    else:
        raise ValueError("not a number")
    if not result.is_finite():
        raise ValueError("not a finite number")
    return result
