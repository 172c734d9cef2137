"""Margin bands: healthy, at risk, underwater (thresholds in settings)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from django.conf import settings

from apps.analytics.selectors import Totals


class Band(StrEnum):
    HEALTHY = "healthy"
    AT_RISK = "at_risk"
    UNDERWATER = "underwater"
    # Neither revenue nor cost: nothing to judge.
    NONE = "none"

    @property
    def label(self) -> str:
        return {
            Band.HEALTHY: "Healthy",
            Band.AT_RISK: "At risk",
            Band.UNDERWATER: "Underwater",
            Band.NONE: "No margin yet",
        }[self]


def band_of(margin_pct: Decimal | None, cost: Decimal) -> Band:
    """The band of a margin % (of revenue). Cost with no revenue at all is underwater."""
    if margin_pct is None:
        return Band.UNDERWATER if cost > 0 else Band.NONE
    if margin_pct >= settings.TANSO_MARGIN_HEALTHY:
        return Band.HEALTHY
    if margin_pct >= settings.TANSO_MARGIN_AT_RISK:
        return Band.AT_RISK
    return Band.UNDERWATER


def band(totals: Totals) -> Band:
    return band_of(totals.margin_pct, totals.cost)


def thresholds() -> dict[str, int]:
    return {"healthy": settings.TANSO_MARGIN_HEALTHY, "at_risk": settings.TANSO_MARGIN_AT_RISK}
