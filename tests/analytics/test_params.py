"""Query parameter parsing: windows, bounds and cursors (no database)."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.analytics.params import (
    OPEN_END,
    TableQuery,
    Window,
    event_cursor,
    next_event_cursor,
    parse_bounds,
    parse_instant,
    parse_window,
    table_cursor,
    table_query,
)
from apps.core.errors import ValidationFailed

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 15, 17, 42, tzinfo=UTC)
SORTS = ("cost", "events")


def test_instants():
    assert parse_instant("2026-01-31") == dt.datetime(2026, 1, 31, tzinfo=UTC)
    assert parse_instant("2026-01-31T10:00:00Z") == dt.datetime(2026, 1, 31, 10, tzinfo=UTC)
    assert parse_instant("2026-01-31T10:00:00") == dt.datetime(2026, 1, 31, 10, tzinfo=UTC)
    assert parse_instant("2026-01-31T12:00:00+02:00") == dt.datetime(2026, 1, 31, 10, tzinfo=UTC)
    # "+" decoded as a space by a query string.
    assert parse_instant("2026-01-31T12:00:00 02:00") == dt.datetime(2026, 1, 31, 10, tzinfo=UTC)
    for bad in ("", "today", "2026-02-30", "1969-12-31", "9999-01-01T00:00:00Z"):
        with pytest.raises(ValueError, match=r"."):
            parse_instant(bad)


def test_default_window_is_30_whole_days_ending_tonight():
    window = parse_window({}, now=NOW)
    assert window == Window(
        dt.datetime(2026, 2, 14, tzinfo=UTC), dt.datetime(2026, 3, 16, tzinfo=UTC)
    )
    assert len(window.days()) == 30
    assert window.days()[-1] == dt.date(2026, 3, 15)


def test_partial_windows():
    only_to = parse_window({"to": "2026-03-01"}, now=NOW)
    assert only_to.start == dt.datetime(2026, 1, 30, tzinfo=UTC)
    only_from = parse_window({"from": "2026-03-01"}, now=NOW)
    assert only_from.end == dt.datetime(2026, 3, 16, tzinfo=UTC)
    future = parse_window({"from": "2026-06-01"}, now=NOW)
    assert future.end - future.start == dt.timedelta(days=30)
    with pytest.raises(ValidationFailed):
        parse_window({"from": "2026-03-01", "to": "2026-03-01"}, now=NOW)


def test_windows_widen_to_whole_hours():
    window = Window(
        dt.datetime(2026, 1, 1, 9, 30, tzinfo=UTC), dt.datetime(2026, 1, 1, 10, 0, 1, tzinfo=UTC)
    )
    assert window.to_hours() == Window(
        dt.datetime(2026, 1, 1, 9, tzinfo=UTC), dt.datetime(2026, 1, 1, 11, tzinfo=UTC)
    )
    aligned = parse_window({"from": "2026-01-01", "to": "2026-01-02"}, now=NOW)
    assert aligned.to_hours() == aligned


def test_event_bounds_are_independent():
    assert parse_bounds({}) is None
    bounds = parse_bounds({"from": "2020-01-01"})
    assert bounds is not None and bounds.end == OPEN_END
    with pytest.raises(ValidationFailed):
        parse_bounds({"from": "2026-01-02", "to": "2026-01-01"})


def test_table_cursor_round_trip():
    query = table_query({"sort": "events", "search": " acme "}, sorts=SORTS, default_sort="-cost")
    assert query.search == "acme" and query.offset == 0
    token = table_cursor(query, 50)
    again = table_query({"cursor": token}, sorts=SORTS, default_sort="-cost")
    assert again == TableQuery(sort="events", search="acme", window=query.window, offset=50)
    # A cursor whose sort is not allowed here (forged, or from another table) is refused.
    forged = table_cursor(TableQuery("name", "", query.window), 0)
    with pytest.raises(ValidationFailed):
        table_query({"cursor": forged}, sorts=SORTS, default_sort="-cost")


def test_event_cursor_round_trip():
    at = dt.datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert event_cursor(next_event_cursor(at, 42)) == (at, 42)
    assert event_cursor(None) is None and event_cursor("") is None
    with pytest.raises(ValidationFailed):
        event_cursor("x" * 600)
