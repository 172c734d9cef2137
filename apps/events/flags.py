"""``events_event.flags``: the stamps the system puts on a stored event, in one place.

The column is a JSON object that several apps write and read (ingestion's platform
steps, re-costing, billing, the entitlement counters, the events API). This module
owns its keys, their JSON types, and how they are read and written: Python code goes
through :class:`EventFlags` (typed fields; ``to_json`` / ``from_json``), SQL through
the key constants and :func:`sql_decimal` / :func:`sql_has`, so no other module spells
a key.

The stored JSON is also the ``flags`` object of ``GET /api/events`` items, so the keys
and their JSON shapes never change (``recostRunId`` is camelCase for that reason; the
others are snake_case). Amounts are decimal strings (exact, as ``decimal_str`` writes
them), never JSON numbers. Keys this code does not know are kept as they are
(``EventFlags.other``), so a read-then-write never drops one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from apps.core.money import decimal_str

# -- keys and their JSON types ----------------------------------------------------------------

# A usage cap was passed (entitlements): true, the cap, the window's usage before the
# event, and the units beyond the cap (decimal strings).
USAGE_LIMIT_EXCEEDED = "usage_limit_exceeded"
USAGE_LIMIT_MAX = "usage_limit_max"
USAGE_LIMIT_USED_BEFORE = "usage_limit_used_before"
OVERAGE_UNITS = "overage_units"
# Why plan revenue was not set (text), e.g. "plan currency EUR".
PLAN_REVENUE_SKIPPED = "plan_revenue_skipped"
# A reservationId the event named but could not settle: "<reservation id>: <problem>".
RESERVATION_NOT_SETTLED = "reservation_not_settled"
# Credits (a credit-backed feature): the error code when nothing could be charged; else
# the credits taken (decimal string) and, when a hard-limit pool ran short, true and the
# credits it refused (decimal string). Soft-limit pools are stamped only when short.
CREDIT_ERROR = "credit_error"
CREDIT_DEDUCTED = "credit_deducted"
INSUFFICIENT_CREDITS = "insufficient_credits"
CREDIT_SHORTFALL = "credit_shortfall"
# The re-costing run that last changed the event's cost (integer).
RECOST_RUN_ID = "recostRunId"

_DECIMALS = {
    USAGE_LIMIT_MAX: "usage_limit_max",
    USAGE_LIMIT_USED_BEFORE: "usage_limit_used_before",
    OVERAGE_UNITS: "overage_units",
    CREDIT_DEDUCTED: "credit_deducted",
    CREDIT_SHORTFALL: "credit_shortfall",
}
_TEXTS = {
    PLAN_REVENUE_SKIPPED: "plan_revenue_skipped",
    RESERVATION_NOT_SETTLED: "reservation_not_settled",
    CREDIT_ERROR: "credit_error",
}
_TRUES = {
    USAGE_LIMIT_EXCEEDED: "usage_limit_exceeded",
    INSUFFICIENT_CREDITS: "insufficient_credits",
}
_INTEGERS = {RECOST_RUN_ID: "recost_run_id"}
_OPTIONAL_NAMES = (*_DECIMALS.values(), *_TEXTS.values(), *_INTEGERS.values())


@dataclasses.dataclass(slots=True)
class EventFlags:
    """One event's flags, typed. ``None`` / ``False``: the key is absent."""

    usage_limit_exceeded: bool = False
    usage_limit_max: Decimal | None = None
    usage_limit_used_before: Decimal | None = None
    overage_units: Decimal | None = None
    plan_revenue_skipped: str | None = None
    reservation_not_settled: str | None = None
    credit_error: str | None = None
    credit_deducted: Decimal | None = None
    insufficient_credits: bool = False
    credit_shortfall: Decimal | None = None
    recost_run_id: int | None = None
    # Keys this code does not know, or known keys whose stored value has another type:
    # kept verbatim.
    other: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __bool__(self) -> bool:
        """Whether any key is set (a zero amount is set: it is stored)."""
        if self.other or self.usage_limit_exceeded or self.insufficient_credits:
            return True
        return any(getattr(self, name) is not None for name in _OPTIONAL_NAMES)

    def usage_limit_passed(self, *, limit: Decimal, used_before: Decimal, beyond: Decimal) -> None:
        """The event went ``beyond`` units past a cap of ``limit`` (``used_before`` in
        the cap window before it)."""
        self.usage_limit_exceeded = True
        self.usage_limit_max = limit
        self.usage_limit_used_before = used_before
        self.overage_units = beyond

    def credits_charged(self, *, deducted: Decimal, shortfall: Decimal) -> None:
        """Credits taken for the event, and those a hard-limit pool refused (0: none)."""
        self.credit_deducted = deducted
        if shortfall > 0:
            self.insufficient_credits = True
            self.credit_shortfall = shortfall

    def to_json(self) -> dict[str, Any]:
        """The stored (and rendered) JSON object: only the keys that are set."""
        out: dict[str, Any] = dict(self.other)
        for key, name in _TRUES.items():
            if getattr(self, name):
                out[key] = True
        for key, name in _DECIMALS.items():
            value = getattr(self, name)
            if value is not None:
                out[key] = decimal_str(value)
        for key, name in {**_TEXTS, **_INTEGERS}.items():
            value = getattr(self, name)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> EventFlags:
        """Read a stored object (a JSON null value counts as absent)."""
        flags = cls()
        for key, value in (data or {}).items():
            if value is None:
                continue
            if key in _TRUES and value is True:
                setattr(flags, _TRUES[key], True)
            elif key in _DECIMALS and isinstance(value, str) and _is_decimal(value):
                setattr(flags, _DECIMALS[key], Decimal(value))
            elif key in _TEXTS and isinstance(value, str):
                setattr(flags, _TEXTS[key], value)
            elif key in _INTEGERS and isinstance(value, int) and not isinstance(value, bool):
                setattr(flags, _INTEGERS[key], value)
            else:
                flags.other[key] = value
        return flags


def _is_decimal(text: str) -> bool:
    try:
        return Decimal(text).is_finite()
    except InvalidOperation:
        return False


def public(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``flags`` object an API answer shows for a stored event (what is stored)."""
    return EventFlags.from_json(data).to_json()


# -- SQL ------------------------------------------------------------------------------------


def _column(alias: str) -> str:
    return f"{alias}.flags" if alias else "flags"


def sql_has(key: str, alias: str = "") -> str:
    """SQL: whether the event (table ``alias``) carries ``key``."""
    return f"{_column(alias)} ? '{key}'"


def sql_decimal(key: str, alias: str = "") -> str:
    """SQL: a decimal-string flag as ``numeric`` (NULL when absent)."""
    assert key in _DECIMALS, key
    return f"({_column(alias)}->>'{key}')::numeric"


def sql_subset(keys: tuple[str, ...], alias: str = "") -> str:
    """SQL: a jsonb object of only these keys (absent ones left out), for reading a few
    flags of many events with :meth:`EventFlags.from_json`."""
    pairs = ", ".join(f"'{key}', {_column(alias)}->'{key}'" for key in keys)
    return f"jsonb_strip_nulls(jsonb_build_object({pairs}))"
