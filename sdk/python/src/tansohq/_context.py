"""Who a metered call is for: per call, per context (across asyncio tasks), per client."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

UNASSIGNED = "unassigned"


@dataclass(frozen=True)
class Attribution:
    """The customer, feature, trace, event name and meta a call is recorded under."""

    customer: str | None = None
    feature: str | None = None
    trace: str | None = None
    event_name: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def merged(self, more: Attribution) -> Attribution:
        """``more`` wins where it says something; meta is merged key by key."""
        return replace(
            self,
            customer=more.customer or self.customer,
            feature=more.feature or self.feature,
            trace=more.trace or self.trace,
            event_name=more.event_name or self.event_name,
            meta={**self.meta, **more.meta},
        )

    @classmethod
    def of(cls, value: Mapping[str, Any] | None) -> Attribution:
        """From a per-call ``tanso={...}`` argument (``customer``, ``feature``, ``trace``,
        ``event_name``/``eventName``, ``meta``)."""
        if not value:
            return cls()
        known = {"customer", "feature", "trace", "event_name", "eventName", "meta"}
        unknown = set(value) - known
        if unknown:
            raise TypeError(f"unknown tanso= keys: {sorted(unknown)} (known: {sorted(known)})")
        return cls(
            customer=_text(value.get("customer")),
            feature=_text(value.get("feature")),
            trace=_text(value.get("trace")),
            event_name=_text(value.get("event_name") or value.get("eventName")),
            meta=dict(value.get("meta") or {}),
        )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


_NOBODY = Attribution()
_current: ContextVar[Attribution | None] = ContextVar("tansohq_attribution", default=None)


def current() -> Attribution:
    return _current.get() or _NOBODY


@contextmanager
def attribute(
    *,
    customer: str | None = None,
    feature: str | None = None,
    trace: str | None = None,
    event_name: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Iterator[Attribution]:
    """Every wrapped call inside the block (and in asyncio tasks it starts) is recorded
    for this customer/feature unless the call itself says otherwise."""
    more = Attribution(customer, feature, trace, event_name, dict(meta or {}))
    merged = current().merged(more)
    token = _current.set(merged)
    try:
        yield merged
    finally:
        _current.reset(token)
