"""Reads the dashboard needs beyond the read API's: each takes the environment first.

Totals still come from the analytics selectors (rollups); what is here only
combines them (the heatmap), or reads a handful of rows by key.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import localcontext
from typing import TYPE_CHECKING

from apps.analytics.params import TableQuery, Window
from apps.analytics.selectors import (
    CustomerRow,
    EventFilters,
    EventNames,
    FeatureRow,
    Totals,
    customer_table,
    event_names,
    events_matching,
    feature_table,
    newest_first,
    window_extra,
    window_hours,
)
from apps.core.tenancy import scoped
from apps.events import usage as ledger
from apps.events.models import Event, RecostRun
from apps.events.selectors import events_after  # noqa: F401 - the live tail's read
from apps.pricing.models import ModelPriceOverride, PriceVersion
from apps.pricing.selectors import overrides_for

if TYPE_CHECKING:
    from apps.accounts.models import Environment

# --- Customer x feature heatmap ------------------------------------------------------------


@dataclass(slots=True)
class Heatmap:
    customers: list[CustomerRow]
    features: list[FeatureRow]
    # (customer_id, feature_id) -> totals; a missing pair had no events.
    cells: dict[tuple[uuid.UUID, uuid.UUID], Totals] = field(default_factory=dict)

    def rows(self) -> list[tuple[CustomerRow, list[tuple[FeatureRow, Totals | None]]]]:
        return [
            (
                customer,
                [
                    (feature, self.cells.get((customer.customer.pk, feature.feature.pk)))
                    for feature in self.features
                ],
            )
            for customer in self.customers
        ]


def heatmap(environment: Environment, window: Window, *, size: int) -> Heatmap:
    """The ``size`` costliest customers x the ``size`` costliest features of the window.

    Rows and columns come from the analytics tables (sorted by cost); the cells
    are one GROUP BY (customer, feature) over the same rollups, limited to those
    ids. Five queries whatever ``size``.
    """
    query = TableQuery(sort="-cost", search="", window=window)
    customers = customer_table(environment, query, limit=size).rows
    features = feature_table(environment, query, limit=size).rows
    result = Heatmap(customers=customers, features=features)
    if not customers or not features:
        return result
    start, end = window_hours(window)
    grouped = ledger.usage(
        environment,
        start=start,
        end=end,
        group_by=(ledger.Grain.CUSTOMER, ledger.Grain.FEATURE),
        filters=ledger.UsageFilter(
            customer_ids=[row.customer.pk for row in customers],
            feature_ids=[row.feature.pk for row in features],
        ),
    )
    for row in grouped:
        assert row.key.customer_id is not None and row.key.feature_id is not None
        result.cells[(row.key.customer_id, row.key.feature_id)] = Totals.of_measures(row.measures)
    # Revenue beside the events' (imported subscriptions), as the tables count it.
    for pair, amount in window_extra(environment, window).by_customer_feature().items():
        cell = result.cells.get(pair)
        if cell is not None:
            with localcontext(prec=80):
                cell.revenue += amount
    return result


# --- Unpriced events ----------------------------------------------------------------------

# Every event's time is within these (ingestion refuses older and far-future events).
LEDGER_START = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LEDGER_END = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)


def unpriced_count(environment: Environment) -> int:
    """How many of the environment's events, all time, have an unknown cost."""
    return ledger.usage_totals(environment, start=LEDGER_START, end=LEDGER_END).unpriced_count


@dataclass(frozen=True, slots=True)
class UnpricedModel:
    model: str
    provider: str
    unpriced: int


def unpriced_models(
    environment: Environment, *, start: dt.datetime, end: dt.datetime
) -> list[UnpricedModel]:
    """(model, provider, unpriced events) of the whole hours covering ``[start, end)``,
    most unpriced first."""
    rows = ledger.usage(
        environment,
        start=ledger.hour_floor(start),
        end=ledger.hour_ceil(end),
        group_by=(ledger.Grain.MODEL,),
    )
    found = [
        UnpricedModel(row.key.model or "", row.key.provider or "", row.measures.unpriced_count)
        for row in rows
        if row.measures.unpriced_count > 0
    ]
    return sorted(found, key=lambda m: (-m.unpriced, m.model, m.provider))


# --- Events ------------------------------------------------------------------------------


def latest_event(environment: Environment) -> tuple[Event, EventNames] | None:
    """The environment's newest event (by occurredAt), or None: one index probe."""
    events = newest_first(events_matching(environment, EventFilters()), before=None, limit=1)
    if not events:
        return None
    return events[0], event_names(environment, events)


@dataclass(slots=True)
class Provenance:
    """How the cost of one event was found, for people."""

    price_version: PriceVersion | None
    override: ModelPriceOverride | None


def provenance(environment: Environment, events: Iterable[Event]) -> dict[int, Provenance]:
    """Price version and matching override of each event: two queries for any number.

    ``override`` is the environment's override for the event's model (or provider)
    as it stands now; the event itself records only that one was used.
    """
    events = list(events)
    version_ids = {event.price_version_id for event in events if event.price_version_id}
    versions = (
        {
            version.pk: version
            for version in PriceVersion.objects.select_related("model__provider").filter(
                pk__in=version_ids
            )
        }
        if version_ids
        else {}
    )
    overrides: dict[tuple[str, str], ModelPriceOverride] = {}
    if any(event.cost_source.startswith("override") for event in events):
        overrides = {(o.provider, o.model): o for o in overrides_for(environment)}
    result: dict[int, Provenance] = {}
    for event in events:
        override = None
        if event.cost_source.startswith("override"):
            provider, model = event.provider.lower(), event.model.lower()
            override = (
                overrides.get((provider, model))
                or overrides.get(("", model))
                or overrides.get((provider, ""))
            )
        result[event.id] = Provenance(
            price_version=versions.get(event.price_version_id) if event.price_version_id else None,
            override=override,
        )
    return result


# --- Re-costing --------------------------------------------------------------------------


def recost_run_since(environment: Environment, since: dt.datetime | None) -> RecostRun | None:
    """The environment's latest re-costing run that started at or after ``since``."""
    runs = scoped(RecostRun, environment)
    if since is not None:
        runs = runs.filter(started_at__gte=since)
    return runs.order_by("-started_at", "-id").first()
