"""The one money rule (apps.core.money_format): whole minor units at and above one, two
significant digits below it, signs and symbols that never break away, the exact value on
hover, currency-aware. No database."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.template import Context, Template

from apps.core.money_format import (
    MINUS,
    NBSP,
    WORD_JOINER,
    exact_money,
    format_money,
    format_number,
    format_price,
    money_html,
)

D = Decimal
NEG = MINUS + WORD_JOINER  # the minus sign, tied to what follows


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (D(0), "$0.00"),
        (D("0.000000000000"), "$0.00"),  # a stored zero with 12 places
        (D("0.01"), "$0.01"),  # exactly one cent
        (D("0.010000000000"), "$0.01"),
        (D("0.00999"), "$0.01"),  # rounds up to a whole cent: shown as one
        (D("0.009949"), "$0.0099"),
        (D("0.0064"), "$0.0064"),
        (D("0.06363552"), "$0.06"),  # the example: was "$0.06363552"
        (D("0.149322"), "$0.15"),
        (D("0.00035"), "$0.00035"),
        (D("0.000351"), "$0.00035"),
        (D("0.0010"), "$0.001"),  # no trailing zeros below a cent
        (D("0.000000001"), "$0.000000001"),  # tiny: never "$0.00" (costs are never zero)
        (D("0.015"), "$0.02"),  # half to even at the cent
        (D("1.005"), "$1.00"),
        (D("1234567.891"), "$1,234,567.89"),  # thousands separators
        (D(49), "$49.00"),
        (7, "$7.00"),
    ],
)
def test_usd_amounts(amount, shown):
    assert format_money(amount) == shown


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (D("-0.7"), f"{NEG}$0.70"),
        (D("-0.006"), f"{NEG}$0.006"),  # the sign does not break from "$0.006"
        (D("-1234.5"), f"{NEG}$1,234.50"),
        (D("-0.00999"), f"{NEG}$0.01"),
    ],
)
def test_negative_amounts_use_a_minus_sign_tied_to_the_number(amount, shown):
    assert format_money(amount) == shown
    assert "-" not in format_money(amount)  # never a hyphen


def test_signed_changes():
    assert format_money(D("2.5"), signed=True) == f"+{WORD_JOINER}$2.50"
    assert format_money(D("-2.5"), signed=True) == f"{NEG}$2.50"
    assert format_money(D(0), signed=True) == "$0.00"


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (D("1000"), "JPY", "¥1,000"),  # zero-decimal: whole yen
        (D("1000.4"), "JPY", "¥1,000"),
        (D("0.35"), "JPY", "¥0.35"),  # below one yen: significant digits
        (D("0.4"), "jpy", "¥0.4"),
        (D("2.5"), "KWD", f"2.500{NBSP}KWD"),  # three minor digits, code after
        (D("0.0004"), "KWD", f"0.0004{NBSP}KWD"),
        (D("1234.5"), "EUR", "€1,234.50"),
        (D("0.5"), "GBP", "£0.50"),
        (D("7.1"), "CHF", f"7.10{NBSP}CHF"),
        (D("-7.1"), "CHF", f"{NEG}7.10{NBSP}CHF"),
    ],
)
def test_currency_aware(amount, currency, shown):
    assert format_money(amount, currency) == shown


def test_prices_stay_exact_with_at_least_the_minor_digits():
    assert format_price(D("0.00125")) == "$0.00125"  # a contract rate is never rounded
    assert format_price(D("19.5")) == "$19.50"
    assert format_price(D("1000"), "JPY") == "¥1,000"
    assert format_price(D("2.5"), "KWD") == f"2.500{NBSP}KWD"
    assert format_number(D("1000")) == "1,000" and format_number(D("0.0020")) == "0.002"


def test_html_carries_the_exact_value_and_does_not_wrap():
    html = money_html(D("-0.06363552"))
    assert html == (f'<span class="money" title="-0.06363552 USD">{NEG}$0.06</span>')
    assert exact_money(D("0.010000000000"), "eur") == "0.01 EUR"


def test_floats_and_non_finite_amounts_are_refused():
    with pytest.raises(TypeError):
        format_money(0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        format_money(True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-finite"):
        format_money(D("NaN"))


def test_template_filters():
    template = Template(
        "{% load money %}{{ a|usd }}|{{ a|usd_text }}|{{ b|money:'JPY' }}|{{ none|usd }}"
    )
    rendered = template.render(Context({"a": D("0.0064"), "b": D("1500"), "none": None}))
    assert rendered == (
        '<span class="money" title="0.0064 USD">$0.0064</span>|$0.0064|'
        '<span class="money" title="1500 JPY">¥1,500</span>|—'
    )
    # The dashboard's library keeps the same filters under the same names.
    same = Template("{% load tanso_format %}{{ a|usd:'signed' }}").render(Context({"a": D(3)}))
    assert same == f'<span class="money" title="3 USD">+{WORD_JOINER}$3.00</span>'
