"""Query-string values read by hand, refused with a 400 naming the parameter when bad
(never silently read as their default)."""

from __future__ import annotations

from collections.abc import Mapping

from apps.core.errors import InvalidQuery

_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


def query_bool(params: Mapping[str, str], name: str) -> bool | None:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, any case); None when absent."""
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidQuery(fields={name: ["Must be true or false."]})


def query_choice(params: Mapping[str, str], name: str, choices: list[str]) -> str | None:
    """One of ``choices`` exactly; None when absent."""
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise InvalidQuery(fields={name: [f"One of {', '.join(choices)}."]})
    return raw
