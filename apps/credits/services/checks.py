"""Checks the credits services share: a positive credit amount, and which constraint an
``IntegrityError`` names."""

from __future__ import annotations

from decimal import Decimal

from django.db import IntegrityError

from apps.core.errors import ValidationFailed
from apps.credits.amounts import quantize_credits


def _positive_credits(value: Decimal, field: str) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValidationFailed(fields={field: ["Must be a decimal number."]})
    rounded = quantize_credits(value)
    if rounded != value:
        raise ValidationFailed(fields={field: ["At most 6 decimal places."]})
    if value <= 0:
        raise ValidationFailed(fields={field: ["Must be greater than 0."]})
    return value


def _constraint_of(exc: IntegrityError) -> str | None:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None)
