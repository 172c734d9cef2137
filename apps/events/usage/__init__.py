"""Reading the ledger: sums of usage, cost, revenue and tokens over a time window.

This package is the only way an app reads sums of the events: billing, entitlement
counters, analytics and the dashboard all go through it, and the SQL against
``events_event`` and the rollup tables lives in ``apps.events`` alone.

The contract:

* **Windows** are ``[start, end)`` of aware datetimes (UTC or not), at any precision.
* **Exact at the edges.** The sums are exactly those of the raw events whose
  ``occurred_at`` falls in the window: whole UTC days come from a daily rollup where
  the grains and filters allow one, the remaining whole hours from the hourly rollup,
  the fractions of an hour at either edge from the events themselves
  (:func:`.sql.split`). The rollups are kept in the events' own transaction, so a
  stored event counts at once. A caller that wants whole hours (the analytics tables)
  passes an hour-aligned window and reads rollups only.
* **Grains** (:class:`Grain`) compose: ``group_by=(Grain.CUSTOMER, Grain.FEATURE)``
  returns one :class:`UsageRow` per (customer, feature) with events, its
  :class:`UsageKey` holding those two fields. ``Grain.MODEL`` is (model, provider),
  ``Grain.DAY`` and ``Grain.HOUR`` are aware UTC datetimes of the bucket's start.
* **Filters** (:class:`UsageFilter`) restrict customers, features, models and providers.
* **Tenancy**: every read takes the environment (or its id) first and sees only that
  environment's events.
* **Units**: ``usage_units`` in the feature's units, ``cost_usd`` / ``revenue_usd`` in
  USD, exact ``Decimal`` (the stored 12 fractional digits); ``cost_usd`` sums priced
  events only and ``unpriced_count`` says how many it leaves out; margin is
  ``revenue_usd - cost_usd``. Token and event counts are ``int``.

Entry points:

* :func:`usage` / :func:`usage_totals`: grouped (or total) :class:`Measures` of one window.
* :func:`customer_window_sums`: amounts per group for many customer windows at once
  (billing periods: one statement per chunk of windows).
* :func:`rows_sql`: the window's ledger rows as SQL to sum, sort and page in the
  caller's own statement (the analytics tables, which sort and cut pages in SQL).
* :func:`recognised_revenue`: revenue the events do not carry (invoices), recognised
  day by day over its service period (``events_recognisedrevenue``, docs/revenue.md),
  per customer, feature (or none) and day of a window.
* :func:`units_parts`: a customer x feature window's ``usage_units`` as statements a
  caller unions with its own (entitlement counters: one round trip).

Reads of single events (lists, traces, the latest event, latency percentiles, event
flags) are in :mod:`apps.events.selectors`.
"""

from .reads import (
    ALL_MEASURES,
    CustomerWindow,
    WindowSums,
    customer_window_sums,
    rows_sql,
    units_parts,
    usage,
    usage_totals,
)
from .revenue import RecognisedPart, recognised_revenue, recognised_total
from .sql import Source, hour_ceil, hour_floor, split
from .types import (
    AMOUNTS,
    NO_FILTER,
    Grain,
    Measure,
    Measures,
    UsageFilter,
    UsageKey,
    UsageRow,
)

__all__ = [
    "ALL_MEASURES",
    "AMOUNTS",
    "NO_FILTER",
    "CustomerWindow",
    "Grain",
    "Measure",
    "Measures",
    "RecognisedPart",
    "Source",
    "UsageFilter",
    "UsageKey",
    "UsageRow",
    "WindowSums",
    "customer_window_sums",
    "hour_ceil",
    "hour_floor",
    "recognised_revenue",
    "recognised_total",
    "rows_sql",
    "split",
    "units_parts",
    "usage",
    "usage_totals",
]
