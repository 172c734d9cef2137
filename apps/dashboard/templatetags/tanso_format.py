"""Formatting for the dashboard: money stays Decimal until it becomes text here.

* ``usd``, ``money``, ``usd_text``, ``money_text``: for people, under the one money
  rule of :mod:`apps.core.money_format` (whole cents at and above a cent, two
  significant digits below it, exact value on hover).
* ``dec``: for machines (``data-*`` attributes, chart data): the exact
  decimal string the API would send.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from urllib.parse import urlencode

from django import template
from django.utils.html import format_html

from apps.analytics.rendering import latency_ms
from apps.analytics.selectors import Totals
from apps.core.money import decimal_str
from apps.core.templatetags import money as money_filters
from apps.dashboard.margins import Band, band

register = template.Library()

# U+2212: a real minus sign reads better than a hyphen in figures.
MINUS = "\u2212"
DASH = "—"


def _as_decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise TypeError(f"expected a Decimal, got {type(value).__name__}")


def _sign(amount: Decimal, signed: bool) -> str:
    if amount < 0:
        return MINUS
    return "+" if signed and amount > 0 else ""


# Money under the one rule of apps.core.money_format, also loadable here ({% load money %}).
usd = register.filter("usd", money_filters.usd)
usd_text = register.filter("usd_text", money_filters.usd_text)
money = register.filter("money", money_filters.money)
money_text = register.filter("money_text", money_filters.money_text)


@register.filter
def dec(value: Any) -> str:
    """The exact decimal string (empty for None), as the API renders it."""
    amount = _as_decimal(value)
    return "" if amount is None else decimal_str(amount)


@register.filter
def pct(value: Any, arg: str = "") -> str:
    """A percent to 0.1; ``"signed"`` adds "+", ``"points"`` writes " pts" (a change of a %)."""
    amount = _as_decimal(value)
    if amount is None:
        return DASH
    options = arg.split(",")
    rounded = amount.quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN)
    unit = " pts" if "points" in options else "%"
    return f"{_sign(rounded, 'signed' in options)}{abs(rounded)}{unit}"


@register.filter
def count(value: Any) -> str:
    return DASH if value is None else f"{value:,}"


@register.filter
def ms(value: Any) -> str:
    """A latency (a duration, not money) to 0.1 ms."""
    shown = latency_ms(float(value)) if value is not None else None
    return DASH if shown is None else f"{shown:,} ms"


@register.filter
def duration(value: Any) -> str:
    """Whole milliseconds for people: "850 ms", "2.4 s", "3 min 12 s", "1 h 0 min"."""
    if value is None:
        return DASH
    total = int(value)
    if abs(total) < 1000:
        return f"{total:,} ms"
    seconds = Decimal(total) / 1000
    if abs(seconds) < 60:
        return f"{seconds.quantize(Decimal('0.1'), rounding=ROUND_HALF_EVEN)} s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"


@register.filter
def margin_band(totals: Totals) -> Band:
    return band(totals)


@register.simple_tag
def band_badge(totals: Totals) -> str:
    """``{% band_badge totals %}``: the band's badge (a tag, not an include: tables draw
    one per row)."""
    b = band(totals)
    return format_html(
        '<span class="band band-{}" data-band="{}">{}</span>', b.value, b.value, b.label
    )


@register.simple_tag
def query(params: dict[str, Any] | None, **changes: Any) -> str:
    """``?`` + the page's parameters with ``changes`` applied (None or "" drops one)."""
    merged = {**(params or {}), **changes}
    kept = {key: value for key, value in merged.items() if value not in (None, "")}
    return "?" + urlencode(kept) if kept else "?"


ARROW = "\u2192"


def _audit_value(value: Any) -> str:
    if value is None or value == "":
        return DASH
    if isinstance(value, dict):
        return ", ".join(f"{key}={_audit_value(item)}" for key, item in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_audit_value(item) for item in value) + "]"
    return str(value)


@register.filter
def audit_detail(detail: Any) -> list[tuple[str, str]]:
    """An audit entry's detail as (field, text) lines; ``[before, after]`` pairs (at the top
    or under ``changes``) read "before → after"."""
    if not isinstance(detail, dict):
        return [("", _audit_value(detail))] if detail else []
    items: list[tuple[str, Any]] = []
    for key, value in detail.items():
        if key == "changes" and isinstance(value, dict):
            items.extend(value.items())
        else:
            items.append((key, value))
    return [
        (
            key,
            f"{_audit_value(value[0])} {ARROW} {_audit_value(value[1])}"
            if isinstance(value, list) and len(value) == 2
            else _audit_value(value),
        )
        for key, value in items
    ]
