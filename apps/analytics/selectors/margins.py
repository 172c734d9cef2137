"""Margin bands and the environment's target margin (docs/analytics.md, "Bands")."""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import TYPE_CHECKING

from apps.analytics.models import DEFAULT_TARGET_MARGIN, MarginSettings
from apps.core.tenancy import scoped

from .totals import Totals

if TYPE_CHECKING:
    from apps.accounts.models import Environment


class Band(enum.StrEnum):
    LOSS = "loss"  # margin < 0: losing money
    THIN = "thin"  # 0 <= margin % < target
    HEALTHY = "healthy"  # margin % >= target
    UNKNOWN = "unknown"  # cost unknown (unpriced events), or neither revenue nor cost

    @property
    def label(self) -> str:
        return {
            Band.LOSS: "Loss",
            Band.THIN: "Thin",
            Band.HEALTHY: "Healthy",
            Band.UNKNOWN: "Unknown",
        }[self]


def band_of(totals: Totals, target: Decimal) -> Band:
    """The band of a row. Unpriced events only make cost larger, so a known loss stays a
    loss; otherwise a row with unpriced events is unknown (its margin is an upper bound)."""
    if totals.margin < 0:
        return Band.LOSS
    if totals.unpriced or (not totals.revenue and not totals.cost):
        return Band.UNKNOWN
    pct = totals.margin_pct
    if pct is None:  # no revenue, no cost: handled above; kept for the type
        return Band.UNKNOWN
    return Band.HEALTHY if pct >= target else Band.THIN


def target_margin(environment: Environment) -> Decimal:
    """The environment's target margin in percent (70 without a settings row)."""
    value = (
        scoped(MarginSettings, environment.pk).values_list("target_margin_pct", flat=True).first()
    )
    return DEFAULT_TARGET_MARGIN if value is None else value
