"""Template filters for money, all under :mod:`apps.core.money_format`'s one rule.

``{% load money %}``, then:

* ``{{ x|usd }}`` / ``{{ x|usd:"signed" }}``: a USD amount as a no-wrap span titled
  with the exact value (``"signed"`` puts "+" before a positive change);
* ``{{ x|money:invoice.currency }}``: the same in any currency;
* ``{{ x|usd_text }}`` / ``{{ x|money_text:currency }}``: the plain text, for
  attributes (``title="..."``) and other places markup cannot go.

None (nothing to show) reads as an em dash.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString

from apps.core.money_format import format_money, money_html

register = template.Library()

DASH = "—"


@register.filter
def usd(value: Any, arg: str = "") -> SafeString | str:
    if value is None or value == "":
        return DASH
    return money_html(value, "USD", signed=arg == "signed")


@register.filter
def usd_text(value: Any, arg: str = "") -> str:
    if value is None or value == "":
        return DASH
    return format_money(value, "USD", signed=arg == "signed")


@register.filter
def money(value: Any, currency: str = "USD") -> SafeString | str:
    if value is None or value == "":
        return DASH
    return money_html(value, currency or "USD")


@register.filter
def money_text(value: Any, currency: str = "USD") -> str:
    if value is None or value == "":
        return DASH
    return format_money(value, currency or "USD")
