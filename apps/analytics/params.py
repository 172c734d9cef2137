"""Query parameters of the read API: time windows, sorts and offset cursors.

Everything here turns a bad parameter into a 400 ``validation_failed`` with
field errors, never a 500.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass

from django.utils import timezone

from apps.core.api.pagination import decode_cursor, encode_cursor
from apps.core.api.parsers import loads
from apps.core.errors import InvalidQuery, ValidationFailed

DEFAULT_WINDOW = dt.timedelta(days=30)
MAX_WINDOW = dt.timedelta(days=400)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
PARAM_MAX_LENGTH = 255
# Instants outside these years are refused: window arithmetic near year 1 or
# 9999 would overflow, and no event can be older than 2000 (ingestion refuses it).
EARLIEST_YEAR, LATEST_YEAR = 1970, 9000
# A deeper offset is not a page anyone reached by following cursors (and SQL
# OFFSET must stay within a bigint).
MAX_OFFSET = 10_000_000


def invalid_parameter(*, fields: dict[str, list[str]]) -> ValidationFailed:
    """A 400 ``validation_failed`` about the query string (not the body)."""
    return InvalidQuery(fields=fields)


@dataclass(frozen=True, slots=True)
class Window:
    """``[start, end)`` in UTC."""

    start: dt.datetime
    end: dt.datetime

    def days(self) -> list[dt.date]:
        """Every UTC date the window touches, in order."""
        first, last = self.start.date(), (self.end - dt.timedelta(microseconds=1)).date()
        return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]

    def to_hours(self) -> Window:
        """The window widened to whole hours: rollups cannot cut an hour in two."""
        start = self.start.replace(minute=0, second=0, microsecond=0)
        end = self.end.replace(minute=0, second=0, microsecond=0)
        if end < self.end:
            end += HOUR
        return Window(start, end)


def parse_instant(raw: str) -> dt.datetime:
    """ISO 8601 date (midnight UTC) or datetime (naive means UTC) -> aware UTC datetime."""
    text = raw.strip()
    if not text or len(text) > 64:
        raise ValueError("empty or too long")
    if len(text) == 10:
        day = dt.date.fromisoformat(text)
        value = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    else:
        # A "+" in a query string often arrives decoded as a space.
        if len(text) > 19 and text[-6] == " " and text[-3] == ":":
            text = text[:-6] + "+" + text[-5:]
        value = dt.datetime.fromisoformat(text)
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError("year out of range")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _instant(params: Mapping[str, str], name: str) -> dt.datetime | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_instant(raw)
    except (ValueError, OverflowError):
        raise invalid_parameter(
            fields={
                name: [
                    "Must be an ISO 8601 date (2026-01-31) or datetime "
                    f"(2026-01-31T12:00:00Z), years {EARLIEST_YEAR} to {LATEST_YEAR}."
                ]
            }
        ) from None


def default_window_end(now: dt.datetime | None = None) -> dt.datetime:
    """Midnight UTC that ends today: the default window is whole days, today included."""
    today = (now or timezone.now()).astimezone(dt.UTC).date()
    return dt.datetime(today.year, today.month, today.day, tzinfo=dt.UTC) + DAY


def parse_window(params: Mapping[str, str], *, now: dt.datetime | None = None) -> Window:
    """``from`` / ``to`` (``to`` exclusive) of an aggregate: default the last 30 days, max 400."""
    start, end = _instant(params, "from"), _instant(params, "to")
    if end is None:
        end = default_window_end(now)
        if start is not None and start >= end:
            end = start + DEFAULT_WINDOW
    if start is None:
        start = end - DEFAULT_WINDOW
    if start >= end:
        raise invalid_parameter(fields={"to": ["Must be later than 'from'."]})
    if end - start > MAX_WINDOW:
        raise invalid_parameter(fields={"from": ["The window may span at most 400 days."]})
    return Window(start, end)


# The open ends of a raw event range (never used in arithmetic, so no overflow).
OPEN_START = dt.datetime.min.replace(tzinfo=dt.UTC)
OPEN_END = dt.datetime.max.replace(tzinfo=dt.UTC)


def parse_bounds(params: Mapping[str, str]) -> Window | None:
    """``from`` / ``to`` of a raw event list: two independent, optional bounds.

    Neither: None (every event). A list is read newest first through an index,
    so its range needs no default and no maximum span.
    """
    start, end = _instant(params, "from"), _instant(params, "to")
    if start is None and end is None:
        return None
    start = start if start is not None else OPEN_START
    end = end if end is not None else OPEN_END
    if start >= end:
        raise invalid_parameter(fields={"to": ["Must be later than 'from'."]})
    return Window(start, end)


def text_param(params: Mapping[str, str], name: str) -> str | None:
    """An optional exact-match filter value; over-long or NUL values are a 400."""
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > PARAM_MAX_LENGTH or "\x00" in raw:
        raise invalid_parameter(fields={name: [f"At most {PARAM_MAX_LENGTH} characters, no NUL."]})
    return raw


def sort_param(params: Mapping[str, str], allowed: tuple[str, ...], default: str) -> str:
    """One of ``allowed`` with an optional leading ``-`` (descending)."""
    raw = params.get("sort") or default
    if raw.lstrip("-") not in allowed or raw.startswith("--"):
        choices = ", ".join(allowed)
        raise invalid_parameter(fields={"sort": [f"One of {choices}, optionally prefixed by '-'."]})
    return raw


# --- Offset cursors for aggregate tables ------------------------------------------------
#
# An aggregate table (customers, features, models) has no stable row to key a
# cursor on, so its cursor is an offset into a total order (the sort, then the
# row id). The cursor also carries the sort, search and window it was made for,
# so the next page is cut from the same ordering even when the default window
# rolls over at midnight; a request that disagrees with its cursor is a 400.


@dataclass(frozen=True, slots=True)
class TableQuery:
    sort: str
    search: str
    window: Window
    offset: int = 0


def _encode(payload: dict[str, object]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def table_cursor(query: TableQuery, offset: int) -> str:
    return _encode(
        {
            "o": offset,
            "s": query.sort,
            "q": query.search,
            "f": query.window.start.isoformat(),
            "t": query.window.end.isoformat(),
        }
    )


def _bad_cursor(message: str = "Malformed cursor.") -> ValidationFailed:
    return invalid_parameter(fields={"cursor": [message]})


def _decode_table_cursor(token: str) -> TableQuery:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = loads(base64.urlsafe_b64decode(padded.encode()))
        offset = data["o"]
        window = Window(dt.datetime.fromisoformat(data["f"]), dt.datetime.fromisoformat(data["t"]))
        sort, search = data["s"], data["q"]
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise _bad_cursor() from None
    if (
        not isinstance(offset, int)
        or isinstance(offset, bool)
        or not 0 <= offset <= MAX_OFFSET
        or not isinstance(sort, str)
        or not isinstance(search, str)
        or window.start.tzinfo is None
        or window.end.tzinfo is None
    ):
        raise _bad_cursor()
    return TableQuery(sort=sort, search=search, window=window, offset=offset)


def table_query(
    params: Mapping[str, str], *, sorts: tuple[str, ...], default_sort: str
) -> TableQuery:
    """The sort, search, window and offset of an aggregate table request."""
    token = params.get("cursor")
    if not token:
        window = parse_window(params)
        search = (params.get("search") or "").strip()
        return TableQuery(
            sort=sort_param(params, sorts, default_sort), search=search, window=window.to_hours()
        )
    if len(token) > 2048:
        raise _bad_cursor()
    query = _decode_table_cursor(token)
    sort_param({"sort": query.sort}, sorts, default_sort)  # a forged sort is still checked
    if params.get("sort") and params["sort"] != query.sort:
        raise _bad_cursor("The cursor was made for another sort.")
    if "search" in params and (params.get("search") or "").strip() != query.search:
        raise _bad_cursor("The cursor was made for another search.")
    if params.get("from") or params.get("to"):
        window = parse_window(params)
        if window.to_hours() != query.window:
            raise _bad_cursor("The cursor was made for another window.")
    if query.window.end - query.window.start > MAX_WINDOW + 2 * HOUR:
        raise _bad_cursor()
    return query


# --- Keyset cursors for the event list --------------------------------------------------
#
# Events have a stable total order, newest first by (occurred_at, id): the cursor is
# the last row's pair (the same token format as every other list, see
# apps/core/api/pagination.py), so a page never shifts when new events arrive.

BIGINT_MAX = 2**63 - 1


def event_cursor(token: str | None) -> tuple[dt.datetime, int] | None:
    """The ``(occurred_at, id)`` a ``cursor`` parameter points after, else None."""
    if not token:
        return None
    if len(token) > 512:
        raise _bad_cursor()
    at_raw, pk_raw = decode_cursor(token)
    try:
        at = dt.datetime.fromisoformat(at_raw)
        pk = int(pk_raw)
    except ValueError:
        raise _bad_cursor() from None
    if at.tzinfo is None or not 0 < pk <= BIGINT_MAX:
        raise _bad_cursor()
    return at, pk


def next_event_cursor(occurred_at: dt.datetime, pk: int) -> str:
    return encode_cursor([occurred_at, pk])
