"""Reads of the Observe API. Every function takes the environment first.

Totals never scan raw events: they sum the ledger's rows through its read API
(:mod:`apps.events.usage`: whole days from the daily rollups, the edge hours from
the hourly one), grouping, sorting and cutting pages in SQL around
:func:`apps.events.usage.rows_sql`. Windows are whole hours (see
:meth:`Window.to_hours`): a window reads the hour buckets from the hour at or
after its start to the one at or after its end (:func:`_hours`), so the ledger
reads rollups only. Raw events are read only where the rollups cannot answer,
through :mod:`apps.events.selectors`: the event list and trace, latency
percentiles (bounded by the window) and a precise ``lastSeen`` (one index probe
per row of the page).

Amounts are USD ``Decimal`` sums of the stored 12-dp amounts; cost sums priced
events only (``unpriced`` says how many are missing from it). Margin is
revenue - cost; margin % is margin / revenue x 100 (None when revenue is 0).
Python arithmetic on sums runs in a 80-digit context: the default 28 digits
could round a 38-digit sum silently.

Revenue is the events' ``revenueAmount`` plus revenue the events do not carry
(invoices recognised in the ledger, subscriptions imported from Stripe:
:mod:`apps.analytics.revenue_sources`, docs/revenue.md),
attributed to customers, features and models for the window; every read below adds
it, so the tables, their sorts, the customer page and the overview agree.

``lastSeen`` is the time of the latest event in the window: one probe of an
``(environment, customer|feature|model, occurred_at)`` index per row shown
(per row of the whole table only when the table is sorted by it).
"""

from apps.events.selectors import (
    COST_SOURCES,
    TRACE_MAX_EVENTS,
    EventFilters,
    EventNames,
    Trace,
    event_names,
    events_batches,
    events_matching,
    last_event_at,
    last_event_subquery,
    last_seen_sql,
    latency_percentiles,
    newest_first,
    trace_get,
)

from .by_customer import (
    CustomerDetail,
    CustomerRow,
    CustomerTable,
    FeatureBreakdown,
    customer_detail,
    customer_rows,
    customer_table,
    customer_table_all,
    customer_tops,
    customers_grouped,
)
from .by_feature import (
    FeatureRow,
    FeatureTable,
    feature_rows,
    feature_table,
    feature_table_all,
    feature_tops,
    features_grouped,
)
from .by_model import ModelRow, ModelTable, model_rows, model_table, model_table_all, models_grouped
from .margins import Band, band_of, target_margin
from .overview import DayTotals, Overview, overview, window_totals
from .tables import SORTS, TABLE_SORTS, ModelSlice, Tops
from .totals import (
    AMOUNT_QUANTUM,
    EXACT_DIGITS,
    PCT_QUANTUM,
    ZERO,
    Totals,
    one_read,
    window_extra,
    window_hours,
)

__all__ = [
    "AMOUNT_QUANTUM",
    "COST_SOURCES",
    "EXACT_DIGITS",
    "PCT_QUANTUM",
    "SORTS",
    "TABLE_SORTS",
    "TRACE_MAX_EVENTS",
    "ZERO",
    "Band",
    "CustomerDetail",
    "CustomerRow",
    "CustomerTable",
    "DayTotals",
    "EventFilters",
    "EventNames",
    "FeatureBreakdown",
    "FeatureRow",
    "FeatureTable",
    "ModelRow",
    "ModelSlice",
    "ModelTable",
    "Overview",
    "Tops",
    "Totals",
    "Trace",
    "band_of",
    "customer_detail",
    "customer_rows",
    "customer_table",
    "customer_table_all",
    "customer_tops",
    "customers_grouped",
    "event_names",
    "events_batches",
    "events_matching",
    "feature_rows",
    "feature_table",
    "feature_table_all",
    "feature_tops",
    "features_grouped",
    "last_event_at",
    "last_event_subquery",
    "last_seen_sql",
    "latency_percentiles",
    "model_rows",
    "model_table",
    "model_table_all",
    "models_grouped",
    "newest_first",
    "one_read",
    "overview",
    "target_margin",
    "trace_get",
    "window_extra",
    "window_hours",
    "window_totals",
]
