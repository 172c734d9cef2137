"""JSON in with exact decimals: ``0.05`` becomes ``Decimal("0.05")``, never a float.

NaN and Infinity (which Python's json accepts by default) are refused, and so is, rather
than a 500 further on (docs/api.md, "Limits"):

* nesting deeper than ``settings.JSON_MAX_DEPTH``: 400 ``malformed_body`` (Python's
  parser raises ``RecursionError`` at about a thousand levels, and every later walk of
  the value could too);
* a NUL character (``\\u0000``) or a lone UTF-16 surrogate (``\\ud800`` without its
  pair) in any string or key: 400 ``validation_failed`` naming each one's path.
  PostgreSQL refuses NUL in text and ``jsonb``, and a lone surrogate has no UTF-8 form.

A view whose own validation already bounds the depth and refuses those strings field by
field sets ``validates_json_itself = True``: the event ingestion, where one bad item of
a batch must not stop the others, and where walking a 1000-event batch once more would
cost as much as parsing it. Its bodies are still refused when the parser gives up.

The body's size is limited before it is read (``core.request_limits``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import BaseParser

# An escaped surrogate: then every string is checked for a lone one.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


class UnsafeJSON(ValueError):
    """Valid JSON that the API refuses."""


class UnsafeStrings(UnsafeJSON):
    """Strings or keys PostgreSQL cannot store; ``fields`` maps each one's path (as
    ``a.b.0.c``) to what is wrong with it."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.fields = fields
        super().__init__("strings and keys must not contain NUL or lone surrogates")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` levels deep. Only
    containers are descended into, and the walk stops at the first that is too deep."""
    if limit < 0:
        return True
    children: Iterable[Any]
    if isinstance(value, dict):
        children = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return False
    return any(isinstance(child, dict | list) and _too_deep(child, limit - 1) for child in children)


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "Must not contain a NUL character."
    try:
        text.encode()
    except UnicodeEncodeError:
        return "Must not contain a lone surrogate."
    return None


def _unsafe_strings(value: Any, path: str, out: dict[str, list[str]]) -> None:
    if isinstance(value, str):
        problem = _string_problem(value)
        if problem:
            out[path or "_body"] = [problem]
    elif isinstance(value, dict):
        for key, child in value.items():
            child_path = f"{path}.{key}" if path else key
            problem = _string_problem(key)
            if problem:
                # The path names the key, so it must be printable itself.
                child_path = (
                    child_path.replace("\x00", "\\u0000").encode(errors="backslashreplace").decode()
                )
                out[child_path] = [problem.replace("Must", "A key must")]
            else:
                _unsafe_strings(child, child_path, out)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _unsafe_strings(child, f"{path}.{index}" if path else str(index), out)


def loads(data: bytes | str, *, checked: bool = True) -> Any:
    """``data`` parsed. ``UnsafeJSON`` (a ValueError) when it nests so deep that the
    parser gives up, and, when ``checked``, deeper than ``JSON_MAX_DEPTH`` or with a NUL
    or a lone surrogate in a string or key (``UnsafeStrings``)."""
    # UTF-8 only (RFC 8259; json.loads would also take UTF-16 and UTF-32, and UTF-8-encoded
    # surrogates): a UnicodeDecodeError is malformed JSON.
    raw = data if isinstance(data, str) else data.decode("utf-8-sig")
    depth = settings.JSON_MAX_DEPTH
    try:
        value = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except RecursionError:
        raise UnsafeJSON(f"nested deeper than {depth} levels") from None
    if not checked:
        return value
    # Cheap bound first: a body with no more brackets than the limit cannot exceed it.
    if raw.count("[") + raw.count("{") > depth and _too_deep(value, depth - 1):
        raise UnsafeJSON(f"nested deeper than {depth} levels")
    # Strict JSON has no raw control characters or surrogates in strings: a NUL or a
    # surrogate can only come from an escape, so without one the strings are not walked.
    if "\\u0000" in raw or _ESCAPED_SURROGATE.search(raw):
        problems: dict[str, list[str]] = {}
        _unsafe_strings(value, "", problems)
        if problems:
            raise UnsafeStrings(problems)
    return value


class DecimalJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        if not raw:
            return {}
        view = (parser_context or {}).get("view")
        try:
            return loads(raw, checked=not getattr(view, "validates_json_itself", False))
        except UnsafeStrings as exc:
            raise ValidationError(exc.fields) from exc
        except UnsafeJSON as exc:
            raise ParseError(f"Refused JSON: {exc}.") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"Malformed JSON: {exc}") from exc
