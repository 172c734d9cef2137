"""The overview: totals, activity counts and a daily series of one window."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import localcontext
from typing import TYPE_CHECKING

from django.db import connection

from apps.analytics.params import Window
from apps.events.usage import Grain

from .totals import (
    _MEASURE_SQL,
    EXACT_DIGITS,
    Totals,
    _add_days,
    _dicts,
    _rows,
    window_extra,
)

if TYPE_CHECKING:
    from apps.accounts.models import Environment


# --- Overview --------------------------------------------------------------------------


@dataclass(slots=True)
class DayTotals:
    date: dt.date
    totals: Totals


@dataclass(slots=True)
class Overview:
    window: Window
    totals: Totals
    customers: int
    features: int
    models: int
    daily: list[DayTotals]


def overview(
    environment: Environment, window: Window, *, customer_count: int | None = None
) -> Overview:
    """Totals, activity counts and a gap-free daily series: two queries.

    ``customer_count``: the number of customers with events in the window when the
    caller has it already (:attr:`Tops.active` of :func:`customer_tops` for the same
    window), so it is not counted again (at 10M events the count is a third of the
    overview's SQL time).

    Whole days come from the daily rollups, the window's edge hours from the
    hourly one: the sums, the series and the feature and model counts from
    day x feature x model (a few thousand rows a month, whatever the volume),
    the customer count from day x customer (its primary key alone). The same
    values as the hourly rollup alone gives: every rollup is exact, and the
    totals are the exact sum of the days.
    """
    sums, params = _rows(environment, window, (Grain.DAY,))
    customers, customer_params = _rows(environment, window, (Grain.CUSTOMER,), measures=())
    activity, activity_params = _rows(
        environment, window, (Grain.FEATURE, Grain.MODEL), measures=()
    )
    if customer_count is None:
        counted = f"(SELECT count(*) FROM (SELECT customer_id FROM ({customers}) c GROUP BY 1) g)"  # noqa: S608
    else:
        counted, customer_params = "%s", [customer_count]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (day AT TIME ZONE 'UTC')::date AS day, {_MEASURE_SQL}"  # noqa: S608
            f" FROM ({sums}) r GROUP BY 1",
            params,
        )
        by_day = {row["day"]: Totals.of(row) for row in _dicts(cursor)}
        cursor.execute(
            f"""
            SELECT {counted},
                   count(DISTINCT feature_id),
                   count(DISTINCT provider || '/' || model) FILTER (WHERE model <> '')
              FROM ({activity}) r
            """,  # noqa: S608
            [*customer_params, *activity_params],
        )
        customer_count, features, models = cursor.fetchone()
    _add_days(by_day, window_extra(environment, window))
    totals = Totals()
    for day_totals in by_day.values():
        totals.add(day_totals)
    return Overview(
        window=window,
        totals=totals,
        customers=customer_count,
        features=features,
        models=models,
        daily=[DayTotals(day, by_day.get(day, Totals())) for day in window.days()],
    )


def window_totals(environment: Environment, window: Window) -> Totals:
    """:func:`overview`'s totals alone (for a comparison window): one query."""
    sums, params = _rows(environment, window, ())
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_MEASURE_SQL} FROM ({sums}) r", params)  # noqa: S608
        totals = Totals.of(_dicts(cursor)[0])
    with localcontext(prec=EXACT_DIGITS):
        totals.revenue += window_extra(environment, window).total
    return totals
