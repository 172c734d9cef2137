"""Keyset (cursor) pagination: ``{"items": [...], "nextCursor": str|null, "hasMore": bool}``.

Lists are ordered newest first by ``(created_at, id)``; the cursor is an
opaque token holding the last row's pair, so pages stay stable while new rows
arrive and no page costs an OFFSET scan.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model, Q, QuerySet
from rest_framework.request import Request

from apps.core.errors import InvalidQuery

from .parsers import loads

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def page_limit(request: Request, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidQuery(fields={"limit": ["Must be an integer."]}) from None
    if not 1 <= value <= maximum:
        raise InvalidQuery(fields={"limit": [f"Must be between 1 and {maximum}."]})
    return value


def encode_cursor(values: Iterable[Any]) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, dt.datetime) else str(v) for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(token: str) -> list[str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        values = loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        raise InvalidQuery(fields={"cursor": ["Malformed cursor."]}) from None
    if not isinstance(values, list) or len(values) != 2:
        raise InvalidQuery(fields={"cursor": ["Malformed cursor."]})
    return [str(v) for v in values]


def paginate_newest_first[M: Model](
    queryset: QuerySet[M],
    request: Request,
    render: Callable[[M], dict[str, Any]],
    *,
    time_field: str = "created_at",
) -> dict[str, Any]:
    limit = page_limit(request)
    cursor = request.query_params.get("cursor")
    queryset = queryset.order_by(f"-{time_field}", "-pk")
    if cursor:
        at, pk = decode_cursor(cursor)
        try:
            when = dt.datetime.fromisoformat(at)
        except ValueError:
            raise InvalidQuery(fields={"cursor": ["Malformed cursor."]}) from None
        try:
            queryset = queryset.filter(
                Q(**{f"{time_field}__lt": when}) | Q(**{time_field: when, "pk__lt": pk})
            )
        except (ValueError, TypeError, DjangoValidationError):
            # A forged id of the wrong type (a word where the key is a number).
            raise InvalidQuery(fields={"cursor": ["Malformed cursor."]}) from None
    rows = list(queryset[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor([getattr(rows[-1], time_field), rows[-1].pk]) if has_more else None
    return {"items": [render(row) for row in rows], "nextCursor": next_cursor, "hasMore": has_more}
