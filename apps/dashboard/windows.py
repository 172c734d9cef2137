"""The time window of an Observe page, from its query string.

A page reads ``?range=7|30|90`` (days ending with today, UTC) or a custom
``?from=YYYY-MM-DD&to=YYYY-MM-DD`` where, unlike the API, ``to`` is the last
day *included* (people pick the days they want to see). Both become the same
``[start, end)`` :class:`apps.analytics.params.Window` the API reads, whole
UTC days, so a page and ``GET /api/...?from=<start>&to=<end>`` agree.

A bad value never fails the page: it falls back to the default and says why.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from apps.analytics.params import MAX_WINDOW, Window, default_window_end

PRESETS: tuple[int, ...] = (7, 30, 90)
DEFAULT_DAYS = 30
DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class WindowChoice:
    window: Window
    # The preset in use (7, 30, 90), or None for a custom range.
    days: int | None
    error: str | None = None

    @property
    def first_day(self) -> dt.date:
        return self.window.start.date()

    @property
    def last_day(self) -> dt.date:
        """The last day included (``end`` is exclusive)."""
        return (self.window.end - DAY).date()

    @property
    def length_days(self) -> int:
        return (self.window.end - self.window.start) // DAY

    @property
    def previous(self) -> Window:
        """The window of the same length that ends where this one starts."""
        length = self.window.end - self.window.start
        return Window(self.window.start - length, self.window.start)

    def params(self) -> dict[str, str]:
        """Query parameters that select this window again (for links)."""
        if self.days is not None:
            return {"range": str(self.days)}
        return {"from": self.first_day.isoformat(), "to": self.last_day.isoformat()}

    def api_params(self) -> dict[str, str]:
        """The same window in the read API's terms (``to`` exclusive)."""
        return {"from": self.window.start.isoformat(), "to": self.window.end.isoformat()}


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def preset(days: int, *, now: dt.datetime | None = None) -> WindowChoice:
    end = default_window_end(now)
    return WindowChoice(Window(end - days * DAY, end), days)


def window_from(params: Mapping[str, str], *, now: dt.datetime | None = None) -> WindowChoice:
    raw_from, raw_to = (params.get("from") or "").strip(), (params.get("to") or "").strip()
    if raw_from or raw_to:
        return _custom(raw_from, raw_to, now=now)
    raw = (params.get("range") or "").strip()
    if not raw:
        return preset(DEFAULT_DAYS, now=now)
    if raw.isdigit() and int(raw) in PRESETS:
        return preset(int(raw), now=now)
    return WindowChoice(
        preset(DEFAULT_DAYS, now=now).window,
        DEFAULT_DAYS,
        error=f"Unknown range {raw[:20]!r}: showing the last {DEFAULT_DAYS} days.",
    )


def _custom(raw_from: str, raw_to: str, *, now: dt.datetime | None) -> WindowChoice:
    fallback = preset(DEFAULT_DAYS, now=now)
    try:
        last = dt.date.fromisoformat(raw_to) if raw_to else fallback.last_day
        first = dt.date.fromisoformat(raw_from) if raw_from else last - (DEFAULT_DAYS - 1) * DAY
    except ValueError:
        return WindowChoice(
            fallback.window, DEFAULT_DAYS, error="Dates are YYYY-MM-DD: showing the last 30 days."
        )
    if first.year < 2000 or last.year > 9000:
        return WindowChoice(
            fallback.window, DEFAULT_DAYS, error="Pick dates between 2000 and 9000."
        )
    if first > last:
        return WindowChoice(
            fallback.window, DEFAULT_DAYS, error="The first day comes after the last day."
        )
    window = Window(_midnight(first), _midnight(last) + DAY)
    if window.end - window.start > MAX_WINDOW:
        return WindowChoice(fallback.window, DEFAULT_DAYS, error="A window spans at most 400 days.")
    return WindowChoice(window, None)
