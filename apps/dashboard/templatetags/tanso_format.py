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
from apps.analytics.selectors import Totals, target_margin
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
def margin_band(totals: Totals, target: Any = None) -> Band:
    """``totals|margin_band:target_margin``: loss, thin, healthy or unknown against the
    environment's target margin (the observe pages put ``target_margin`` in context)."""
    return band(totals, None if target in (None, "") else Decimal(str(target)))


@register.simple_tag(takes_context=True)
def band_badge(context: Any, totals: Totals) -> str:
    """``{% band_badge totals %}``: the band's badge (a tag, not an include: tables draw
    one per row), against the page's ``target_margin``."""
    b = band(totals, context.get("target_margin"))
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


@register.simple_tag(takes_context=True)
def environment_target_margin(context: Any) -> Decimal | None:
    """``{% environment_target_margin as target %}``: the current environment's target
    margin (the settings page's field), None outside an environment."""
    request = context.get("request")
    environment = getattr(request, "environment", None)
    return None if environment is None else target_margin(environment)


# --- Unknown is never zero: figures of rows with unpriced events --------------------------

AT_LEAST, AT_MOST = "\u2265\u00a0", "\u2264\u00a0"


def _all_unpriced(totals: Totals) -> bool:
    return totals.events > 0 and totals.unpriced >= totals.events


def _bounded(prefix: str, amount: Decimal, arg: str) -> str:
    # "text": for an attribute (a title), without the money span.
    if arg == "text":
        return prefix + usd_text(amount)
    return format_html("{}{}", prefix, usd(amount))


@register.filter
def cost_of(totals: Totals, arg: str = "") -> str:
    """The row's cost: "unknown" when no event of it has a price, "≥ $x" when some have
    none (the known cost is a lower bound), else the cost. ``"text"``: without markup."""
    if _all_unpriced(totals):
        return "unknown"
    return _bounded(AT_LEAST if totals.unpriced else "", totals.cost, arg)


@register.filter
def margin_of(totals: Totals, arg: str = "") -> str:
    """The row's margin: an upper bound "≤ $x" when some cost is unknown."""
    return _bounded(AT_MOST if totals.unpriced else "", totals.margin, arg)


@register.filter
def margin_pct_of(totals: Totals) -> str:
    """The row's margin %: "unknown" when no event has a price, "≤ x%" when some have
    none (never an exact-looking 100 % for unknown cost), else the percentage."""
    if _all_unpriced(totals):
        return "unknown"
    if totals.unpriced and totals.margin_pct is not None:
        return AT_MOST + pct(totals.margin_pct)
    return pct(totals.margin_pct)
