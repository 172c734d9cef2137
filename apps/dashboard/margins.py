"""Margin bands on the pages: loss, thin, healthy, unknown against the environment's
target margin (:func:`apps.analytics.selectors.band_of`; the target is a setting of
each environment, 70 % by default, editable on the settings page)."""

from __future__ import annotations

from decimal import Decimal

from apps.analytics.models import DEFAULT_TARGET_MARGIN
from apps.analytics.selectors import Band, Totals, band_of

__all__ = ["Band", "band"]


def band(totals: Totals, target: Decimal | None = None) -> Band:
    return band_of(totals, DEFAULT_TARGET_MARGIN if target is None else target)
