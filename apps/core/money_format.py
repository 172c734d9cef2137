"""Money and numbers for people: the one formatting rule of every page, invoice and text.

Amounts stay :class:`~decimal.Decimal` until they become text here. Machines get
the exact decimal string instead (:func:`apps.core.money.decimal_str`: the API,
CSV exports, ``data-*`` attributes).

The rule for an **amount** (a cost, a revenue, a total, an invoice line):

* at and above the currency's minor unit (one cent for USD, one yen for JPY):
  whole minor units, half to even, with thousands separators: ``$1,234.50``,
  ``¥1,000``, ``2.500 KWD``;
* below it, :data:`SIGNIFICANT` significant digits (trailing zeros dropped):
  ``$0.0064``, ``$0.00035``; an amount that rounds up to the minor unit reads as
  one (``0.00999`` -> ``$0.01``); zero is ``$0.00``;
* the sign is a real minus (U+2212), and the sign, the symbol or code and the
  digits never break apart: a word joiner (U+2060) ties the sign to the symbol,
  a no-break space (U+00A0) ties a currency code to the number, and in HTML the
  whole amount is one ``white-space: nowrap`` span whose title is the exact value.
* currency-aware: a symbol for the currencies in :data:`SYMBOLS`, the ISO code
  after the number otherwise; the minor unit comes from ISO 4217
  (:func:`apps.core.money.currency_exponent`).

A **price** (a rate a plan states: "$0.00125 per token") is never rounded: it is
the contract. :func:`format_price` writes it exactly, with at least the
currency's minor digits, under the same sign and symbol rules.
"""

from __future__ import annotations

import functools
from decimal import ROUND_HALF_EVEN, Decimal

from django.utils.html import format_html
from django.utils.safestring import SafeString

from .money import currency_exponent, decimal_str

MINUS = "\u2212"  # a real minus sign, not a hyphen
WORD_JOINER = "\u2060"  # no break between the sign and the symbol
NBSP = "\u00a0"  # no break between the number and a currency code
SIGNIFICANT = 2  # digits shown of an amount below the minor unit
# Currencies written with a symbol before the number; any other reads "12.50 CHF".
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}


@functools.cache
def _minor_unit(currency: str) -> Decimal:
    return Decimal(1).scaleb(-currency_exponent(currency))


def format_number(value: Decimal | int) -> str:
    """A quantity for people, exact: ``1000`` -> ``"1,000"``, ``Decimal("0.0020")`` ->
    ``"0.002"``."""
    return format(Decimal(decimal_str(Decimal(value))), ",f")


def _readable_digits(amount: Decimal, currency: str) -> str:
    """The digits of a non-negative amount under the amount rule (no sign, no symbol)."""
    unit = _minor_unit(currency)
    if amount != 0 and amount < unit:
        quantum = Decimal(1).scaleb(amount.adjusted() - SIGNIFICANT + 1)
        rounded = amount.quantize(quantum, rounding=ROUND_HALF_EVEN)
        if rounded < unit:
            return decimal_str(rounded)
        amount = unit  # rounds up to one minor unit
    return format(amount.quantize(unit, rounding=ROUND_HALF_EVEN), ",f")


def _exact_digits(amount: Decimal, currency: str) -> str:
    """The exact digits of a non-negative amount, at least the currency's minor digits."""
    whole, _, fraction = format_number(amount).partition(".")
    fraction = fraction.ljust(currency_exponent(currency), "0")
    return f"{whole}.{fraction}" if fraction else whole


def _assemble(digits: str, sign: str, currency: str) -> str:
    symbol = SYMBOLS.get(currency.upper())
    text = f"{symbol}{digits}" if symbol else f"{digits}{NBSP}{currency.upper()}"
    return f"{sign}{WORD_JOINER}{text}" if sign else text


def _sign(amount: Decimal, signed: bool) -> str:
    if amount < 0:
        return MINUS
    return "+" if signed and amount > 0 else ""


def format_money(amount: Decimal | int, currency: str = "USD", *, signed: bool = False) -> str:
    """An amount as text under the amount rule (see the module docstring).

    ``signed``: a positive amount gets "+" (a change). Floats are refused.
    """
    value = _as_decimal(amount)
    return _assemble(_readable_digits(abs(value), currency), _sign(value, signed), currency)


def format_price(amount: Decimal | int, currency: str = "USD") -> str:
    """A price as text: exact, at least the minor digits (``$19.50``, ``$0.00125``)."""
    value = _as_decimal(amount)
    return _assemble(_exact_digits(abs(value), currency), _sign(value, False), currency)


def exact_money(amount: Decimal | int, currency: str = "USD") -> str:
    """The exact value with its code, for a hover title: ``"-0.06363552 USD"``."""
    return f"{decimal_str(_as_decimal(amount))} {currency.upper()}"


def money_html(amount: Decimal | int, currency: str = "USD", *, signed: bool = False) -> SafeString:
    """An amount for a page: the readable text in a no-wrap span titled with the exact value."""
    return format_html(
        '<span class="money" title="{}">{}</span>',
        exact_money(amount, currency),
        format_money(amount, currency, signed=signed),
    )


def _as_decimal(value: Decimal | int) -> Decimal:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("non-finite amount")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise TypeError(f"expected a Decimal, got {type(value).__name__}")
