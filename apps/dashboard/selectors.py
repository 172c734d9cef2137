"""Reads the dashboard needs beyond the read API's: each takes the environment first.

Totals still come from the analytics selectors (rollups); what is here only
combines them (the heatmap), or reads a handful of rows by key.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any, cast

from django.db.models import BigIntegerField, DecimalField, Sum, Value
from django.db.models.functions import Coalesce

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
    rollups_in,
    window_extra,
)
from apps.core.tenancy import scoped
from apps.events.models import Event, RecostRun
from apps.pricing.models import ModelPriceOverride, PriceVersion
from apps.pricing.selectors import overrides_for

if TYPE_CHECKING:
    from apps.accounts.models import Environment

_SUM = DecimalField(max_digits=38, decimal_places=12)


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
    grouped = (
        rollups_in(environment, window)
        .filter(
            customer_id__in=[row.customer.pk for row in customers],
            feature_id__in=[row.feature.pk for row in features],
        )
        .values("customer_id", "feature_id")
        .annotate(
            events=Coalesce(Sum("event_count"), Value(0), output_field=BigIntegerField()),
            cost=Coalesce(Sum("cost_usd"), Value(Decimal(0)), output_field=_SUM),
            revenue=Coalesce(Sum("revenue_usd"), Value(Decimal(0)), output_field=_SUM),
            unpriced=Coalesce(Sum("unpriced_count"), Value(0), output_field=BigIntegerField()),
            usage_units=Coalesce(Sum("usage_units"), Value(Decimal(0)), output_field=_SUM),
        )
        .order_by()
    )
    for row in grouped:
        result.cells[(row["customer_id"], row["feature_id"])] = Totals.of(
            cast("dict[str, Any]", row)
        )
    # Revenue beside the events' (imported subscriptions), as the tables count it.
    for pair, amount in window_extra(environment, window).by_customer_feature().items():
        cell = result.cells.get(pair)
        if cell is not None:
            with localcontext(prec=80):
                cell.revenue += amount
    return result


# --- Events ------------------------------------------------------------------------------


def latest_event(environment: Environment) -> tuple[Event, EventNames] | None:
    """The environment's newest event (by occurredAt), or None: one index probe."""
    events = newest_first(events_matching(environment, EventFilters()), before=None, limit=1)
    if not events:
        return None
    return events[0], event_names(environment, events)


# The live tail reads events stored after the newest one on screen, among those that
# occurred in this recent past (the bound lets PostgreSQL prune old partitions). An
# event back-dated further shows up on a reload, in its place in time.
TAIL_LOOKBACK = dt.timedelta(days=2)
TAIL_MAX = 100


def events_after(
    environment: Environment, filters: EventFilters, *, after_id: int, now: dt.datetime
) -> list[Event]:
    """Events matching ``filters`` stored after event ``after_id``, newest first.

    Event ids come from one sequence, so a later insert has a larger id.
    """
    return list(
        events_matching(environment, filters)
        .filter(id__gt=after_id, occurred_at__gte=now - TAIL_LOOKBACK)
        .order_by("-id")[:TAIL_MAX]
    )


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
