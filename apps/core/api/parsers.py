"""JSON in with exact decimals: ``0.05`` becomes ``Decimal("0.05")``, never a float.

NaN and Infinity (which Python's json accepts by default) are refused.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def loads(data: bytes | str) -> Any:
    return json.loads(data, parse_float=Decimal, parse_constant=_reject_constant)


class DecimalJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        if not raw:
            return {}
        try:
            return loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"Malformed JSON: {exc}") from exc
