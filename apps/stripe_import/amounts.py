"""What a Stripe price charges per billing interval for a quantity: exact ``Decimal``.

Stripe states prices in minor units of their currency: ``unit_amount`` (an integer)
or ``unit_amount_decimal`` (a decimal string, up to 12 places), tiers with
``unit_amount`` / ``flat_amount`` (and their ``_decimal`` forms), and
``transform_quantity`` (packages: ``divide_by``, rounded ``up`` or ``down``).
Legacy plans say ``amount`` instead of ``unit_amount``. The amount is computed as
Stripe bills a licensed item: per unit, or the quantity through the tiers
(``volume``: the tier the quantity falls in prices every unit; ``graduated``: each
tier prices the units within it), then turned into major units, unrounded.
"""

from __future__ import annotations

import dataclasses
from decimal import Context, Decimal, InvalidOperation, localcontext
from typing import Any

from apps.core.money import currency_exponent, is_currency

ZERO = Decimal(0)
_EXACT = Context(prec=100)
INTERVALS = ("day", "week", "month", "year")


class PriceError(ValueError):
    """A price this import cannot evaluate (the object is counted as failed, with why)."""


def _decimal(value: Any, *, name: str) -> Decimal:
    if value is None or value == "":
        return ZERO
    if isinstance(value, bool | float):
        # The SDK parses JSON numbers as int; a float would mean lost precision.
        value = str(value)
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise PriceError(f"{name} is not a number: {value!r}") from None
    if not result.is_finite() or result < 0:
        raise PriceError(f"{name} must be a non-negative number: {value!r}")
    return result


def _minor(obj: dict[str, Any], base: str) -> Decimal | None:
    """``<base>_decimal`` when present (exact), else ``<base>`` (integer minor units)."""
    for key in (f"{base}_decimal", base):
        if obj.get(key) not in (None, ""):
            return _decimal(obj[key], name=key)
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class PriceTerms:
    """The parts of a Stripe price (or plan) that decide what it charges."""

    stripe_id: str
    currency: str  # upper case
    unit_amount: Decimal | None  # minor units per unit; None for tiered prices
    billing_scheme: str
    tiers_mode: str
    tiers: tuple[dict[str, Any], ...]
    transform_quantity: dict[str, Any] | None
    interval: str  # "" for one-time prices
    interval_count: int
    usage_type: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> PriceTerms:
        """From a Stripe ``price`` or ``plan`` object (as a plain dict)."""
        stripe_id = str(obj.get("id") or "")
        currency = str(obj.get("currency") or "").upper()
        if len(currency) != 3 or not is_currency(currency):
            raise PriceError(f"price {stripe_id} has no ISO 4217 currency")
        recurring = obj.get("recurring") or {}
        if obj.get("object") == "plan" or ("interval" in obj and not recurring):
            recurring = {
                "interval": obj.get("interval"),
                "interval_count": obj.get("interval_count"),
                "usage_type": obj.get("usage_type"),
            }
        interval = str(recurring.get("interval") or "")
        if interval and interval not in INTERVALS:
            raise PriceError(f"price {stripe_id} has an unknown interval {interval!r}")
        raw_count = recurring.get("interval_count")
        try:
            count = 1 if raw_count in (None, "") else int(raw_count)
        except (TypeError, ValueError):
            raise PriceError(f"price {stripe_id} has a bad interval_count") from None
        if count < 1:
            raise PriceError(f"price {stripe_id} has a bad interval_count")
        scheme = str(obj.get("billing_scheme") or "per_unit")
        unit = _minor(obj, "unit_amount")
        if unit is None and obj.get("object") == "plan":
            unit = _minor(obj, "amount")
        tiers = tuple(dict(t) for t in (obj.get("tiers") or ()))
        if scheme == "tiered" and not tiers:
            raise PriceError(f"tiered price {stripe_id} came without its tiers")
        return cls(
            stripe_id=stripe_id,
            currency=currency,
            unit_amount=None if scheme == "tiered" else (unit if unit is not None else ZERO),
            billing_scheme=scheme,
            tiers_mode=str(obj.get("tiers_mode") or ""),
            tiers=tiers,
            transform_quantity=obj.get("transform_quantity") or None,
            interval=interval,
            interval_count=count,
            usage_type=str(recurring.get("usage_type") or "licensed") if interval else "",
        )

    @property
    def is_recurring_licensed(self) -> bool:
        return bool(self.interval) and self.usage_type != "metered"

    def minor_amount(self, quantity: int) -> Decimal:
        """Minor units charged per interval for ``quantity`` (exact)."""
        if quantity < 0:
            raise PriceError("negative quantity")
        with localcontext(_EXACT):
            if self.billing_scheme != "tiered":
                return (self.unit_amount or ZERO) * self._transformed(quantity)
            if self.tiers_mode == "volume":
                return self._volume(quantity)
            if self.tiers_mode == "graduated":
                return self._graduated(quantity)
        raise PriceError(f"price {self.stripe_id}: unknown tiers_mode {self.tiers_mode!r}")

    def major_amount(self, quantity: int) -> Decimal:
        """Major units of the currency per interval for ``quantity`` (exact)."""
        with localcontext(_EXACT):
            return self.minor_amount(quantity).scaleb(-currency_exponent(self.currency))

    def _transformed(self, quantity: int) -> Decimal:
        transform = self.transform_quantity
        if not transform:
            return Decimal(quantity)
        divide_by = _decimal(transform.get("divide_by"), name="transform_quantity.divide_by")
        if divide_by <= 0:
            raise PriceError(f"price {self.stripe_id}: divide_by must be positive")
        rounding = "ROUND_UP" if transform.get("round") == "up" else "ROUND_DOWN"
        return (Decimal(quantity) / divide_by).quantize(Decimal(1), rounding=rounding)

    def _tier_bounds(self) -> list[tuple[Decimal | None, dict[str, Any]]]:
        bounds: list[tuple[Decimal | None, dict[str, Any]]] = []
        for tier in self.tiers:
            up_to = tier.get("up_to")
            bounds.append((None if up_to in (None, "inf") else _decimal(up_to, name="up_to"), tier))
        return bounds

    def _volume(self, quantity: int) -> Decimal:
        q = Decimal(quantity)
        for up_to, tier in self._tier_bounds():
            if up_to is None or q <= up_to:
                unit = _minor(tier, "unit_amount") or ZERO
                flat = _minor(tier, "flat_amount") or ZERO
                return unit * q + flat
        raise PriceError(f"price {self.stripe_id}: no tier for quantity {quantity}")

    def _graduated(self, quantity: int) -> Decimal:
        q, below, total = Decimal(quantity), ZERO, ZERO
        for up_to, tier in self._tier_bounds():
            if q <= below:
                break
            top = q if up_to is None else min(q, up_to)
            units = top - below
            if units > 0:
                total += (_minor(tier, "unit_amount") or ZERO) * units
                total += _minor(tier, "flat_amount") or ZERO
            if up_to is None:
                break
            below = up_to
        return total
