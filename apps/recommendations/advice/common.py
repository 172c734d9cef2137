"""What every kind of advice shares: the window, the finding, money arithmetic."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import TYPE_CHECKING, Any

from apps.analytics.selectors import target_margin
from apps.core.money import decimal_str
from apps.events.usage import hour_ceil, hour_floor

if TYPE_CHECKING:
    from apps.accounts.models import Environment

ZERO = Decimal(0)
CENT = Decimal("0.01")
EXACT_DIGITS = 80
DEFAULT_WINDOW = dt.timedelta(days=30)
# A month, for scaling a window's figures: 30 days (a 30-day window is one month as is).
MONTH = dt.timedelta(days=30)
TOP_CONTRIBUTORS = 5


@dataclass(frozen=True, slots=True)
class AdviceWindow:
    """``[start, end)`` on whole UTC hours, the target margin ``t`` (a fraction) and the
    factor that turns the window's amounts into a month's (``MONTH / (end - start)``)."""

    start: dt.datetime
    end: dt.datetime
    target: Decimal  # e.g. Decimal("0.7")
    target_pct: Decimal  # e.g. Decimal("70.00")

    @property
    def scale(self) -> Decimal:
        with localcontext(prec=EXACT_DIGITS):
            return Decimal(MONTH // dt.timedelta(microseconds=1)) / Decimal(
                (self.end - self.start) // dt.timedelta(microseconds=1)
            )

    def monthly(self, amount: Decimal) -> Decimal:
        with localcontext(prec=EXACT_DIGITS):
            return amount * self.scale

    def as_json(self) -> dict[str, str]:
        return {"from": iso(self.start), "to": iso(self.end)}

    def assumptions(self) -> list[dict[str, str]]:
        """The constants every finding of this window uses."""
        return [
            assumption(
                "targetMarginPct", self.target_pct, "the environment's target margin (t = %)"
            ),
            assumption("windowDays", _days(self.end - self.start), "the baseline window"),
            assumption(
                "monthScale", self.scale.quantize(Decimal("0.000001")), "a month is 30 days"
            ),
        ]


def advice_window(
    environment: Environment,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    now: dt.datetime,
) -> AdviceWindow:
    """The window widened to whole hours (default: the 30 days up to the hour after now)."""
    end = hour_ceil(end or now)
    start = hour_floor(start) if start is not None else end - DEFAULT_WINDOW
    pct = target_margin(environment)
    with localcontext(prec=EXACT_DIGITS):
        target = pct / 100
    return AdviceWindow(start=start, end=end, target=target, target_pct=pct)


@dataclass(slots=True)
class Finding:
    """One piece of advice as computed (not yet stored): ``stake`` is the money at stake per
    month in USD, exact (rounded to the cent once, when stored)."""

    kind: str
    subject: str
    title: str
    stake: Decimal
    direction: str
    confidence: str
    assumptions: list[dict[str, str]] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    action: dict[str, Any] = field(default_factory=dict)

    @property
    def stake_cents(self) -> Decimal:
        return to_cents(self.stake)


def to_cents(amount: Decimal) -> Decimal:
    """The one rounding of a money-at-stake figure: USD to the cent, half-even."""
    with localcontext(prec=EXACT_DIGITS):
        return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


def money(amount: Decimal) -> str:
    """An amount in evidence: a plain decimal string, exact."""
    return decimal_str(amount)


def assumption(name: str, value: Decimal | int | str, note: str) -> dict[str, str]:
    text = money(value) if isinstance(value, Decimal) else str(value)
    return {"name": name, "value": text, "note": note}


def iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _days(span: dt.timedelta) -> Decimal:
    with localcontext(prec=EXACT_DIGITS):
        return (Decimal(span // dt.timedelta(seconds=1)) / 86400).normalize()


def margin_pct(revenue: Decimal, cost: Decimal) -> str | None:
    """Margin % of revenue, 2 places; None without revenue."""
    if not revenue:
        return None
    with localcontext(prec=EXACT_DIGITS):
        return money(((revenue - cost) * 100 / revenue).quantize(CENT, rounding=ROUND_HALF_EVEN))


def simulate(
    window: AdviceWindow,
    *,
    name: str,
    cohort: dict[str, Any],
    scenarios: list[dict[str, Any]],
) -> dict[str, Any]:
    """A "simulate" action: the body ``POST /api/simulations`` takes, unchanged."""
    return {
        "type": "simulate",
        "request": {
            "name": name,
            "window": window.as_json(),
            "cohort": cohort,
            "scenarios": scenarios,
        },
    }
