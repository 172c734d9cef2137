"""Recognised revenue: what the events do not carry, day by day, beside the rollups.

``events_recognisedrevenue`` holds, per UTC day, customer and feature (or none),
the part of each origin (an invoice) recognised on that day (docs/revenue.md).
A window reads the days it touches; a day the window covers only in part counts
for the part it covers (``amount x covered / 24 h``, exact), so a window of whole
days reads whole rows and the days add up to the origin's amount exactly.

One statement, on the ``(environment, day, customer)`` index; an environment
without recognised revenue reads an empty index range.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any

from django.db import connection

from .sql import DAY
from .types import EXACT_DIGITS, ZERO


@dataclass(frozen=True, slots=True)
class RecognisedPart:
    """The revenue one customer's (feature's, or no feature's) rows give one UTC day of
    the window: exact (the day's rows times the part of the day the window covers)."""

    customer_id: uuid.UUID
    feature_id: uuid.UUID | None
    day: dt.date
    amount: Decimal


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def recognised_revenue(
    environment_id: Any,
    *,
    start: dt.datetime,
    end: dt.datetime,
    customer_ids: list[uuid.UUID] | None = None,
) -> list[RecognisedPart]:
    """Recognised revenue of ``[start, end)`` per customer, feature (None: no feature)
    and UTC day, in that order; one statement. ``customer_ids``: only these customers."""
    if end <= start:
        return []
    first = start.astimezone(dt.UTC).date()
    last = (end - dt.timedelta(microseconds=1)).astimezone(dt.UTC).date()
    sql = (
        "SELECT customer_id, feature_id, day, SUM(amount) FROM events_recognisedrevenue"
        " WHERE environment_id = %s AND day >= %s AND day <= %s"
    )
    params: list[Any] = [environment_id, first, last]
    if customer_ids is not None:
        sql += " AND customer_id = ANY(%s::uuid[])"
        params.append(list(customer_ids))
    sql += " GROUP BY 1, 2, 3 ORDER BY 1, 2 NULLS LAST, 3"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    out = []
    whole = Decimal(int(DAY.total_seconds() * 1_000_000))
    with localcontext(prec=EXACT_DIGITS):
        for customer_id, feature_id, day, day_amount in rows:
            lo, hi = _midnight(day), _midnight(day) + DAY
            covered = min(hi, end) - max(lo, start)
            if covered <= dt.timedelta(0) or not day_amount:
                continue
            amount = (
                day_amount
                if covered >= DAY
                else day_amount * Decimal(covered // dt.timedelta(microseconds=1)) / whole
            )
            out.append(RecognisedPart(customer_id, feature_id, day, amount))
    return out


def recognised_total(parts: list[RecognisedPart]) -> Decimal:
    with localcontext(prec=EXACT_DIGITS):
        return sum((part.amount for part in parts), ZERO)
