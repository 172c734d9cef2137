"""The features table and its tops."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import localcontext
from typing import TYPE_CHECKING, Any

from django.db import connection

from apps.analytics.params import TableQuery, Window
from apps.analytics.revenue_sources import ExtraRevenue
from apps.core.tenancy import scoped
from apps.events.selectors import (
    last_event_subquery,
)
from apps.events.usage import Grain, UsageFilter
from apps.features.models import Feature
from apps.features.selectors import features_search

from .tables import (
    ModelSlice,
    Tops,
    _chunks,
    _GroupedRows,
    _page,
    _table_grouped,
    _tops,
)
from .totals import (
    _MEASURE_SQL,
    EXACT_DIGITS,
    ZERO,
    Totals,
    _dicts,
    _rows,
    window_extra,
)

if TYPE_CHECKING:
    from apps.accounts.models import Environment


@dataclass(slots=True)
class FeatureRow:
    feature: Feature
    totals: Totals
    last_bucket: dt.datetime
    last_seen: dt.datetime | None
    models: list[ModelSlice]


@dataclass(slots=True)
class FeatureTable:
    rows: list[FeatureRow]
    has_more: bool


def features_grouped(
    environment: Environment, query: TableQuery, *, extra: ExtraRevenue | None = None
) -> _GroupedRows:
    """Per-feature sums: whole days from the day x feature x model rollup (a few
    thousand rows a month at any volume), the edge hours from the hourly one."""
    if extra is None:
        extra = window_extra(environment, query.window)
    return _table_grouped(
        environment,
        query,
        key="feature_id",
        search=features_search(environment, query.search).values("id") if query.search else None,
        extra=extra.by_feature(),
    )


def feature_rows(
    environment: Environment,
    window: Window,
    grouped: list[dict[str, Any]],
    *,
    extra: ExtraRevenue | None = None,
) -> list[FeatureRow]:
    """Model breakdown, names and ``lastSeen`` for these grouped rows only: two queries."""
    ids = [row["feature_id"] for row in grouped]
    if not ids:
        return []
    models: dict[uuid.UUID, list[ModelSlice]] = {pk: [] for pk in ids}
    rollups, params = _rows(
        environment,
        window,
        (Grain.FEATURE, Grain.MODEL),
        filters=UsageFilter(feature_ids=ids),
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT feature_id, model, provider, {_MEASURE_SQL}
              FROM ({rollups}) r
             GROUP BY 1, 2, 3
             ORDER BY 1, cost DESC, 2, 3
            """,  # noqa: S608 - names are ours, values bound
            params,
        )
        for row in _dicts(cursor):
            models[row["feature_id"]].append(
                ModelSlice(row["model"], row["provider"], Totals.of(row))
            )
    if extra is None:
        extra = window_extra(environment, window)
    if extra:
        by_slice = extra.by_feature_model()
        with localcontext(prec=EXACT_DIGITS):
            for feature_id, pieces in models.items():
                for piece in pieces:
                    piece.totals.revenue += by_slice.get(
                        (feature_id, piece.model, piece.provider), ZERO
                    )
    features = {
        feature.pk: feature
        for feature in scoped(Feature, environment)
        .filter(id__in=ids)
        .annotate(
            last_seen=last_event_subquery(environment, window.start, window.end, feature_id="id")
        )
    }
    return [
        FeatureRow(
            feature=features[row["feature_id"]],
            totals=Totals.of(row),
            last_bucket=row["last_bucket"],
            last_seen=features[row["feature_id"]].last_seen,
            models=models[row["feature_id"]],
        )
        for row in grouped
        if row["feature_id"] in features
    ]


def feature_table(environment: Environment, query: TableQuery, *, limit: int) -> FeatureTable:
    """One page of features by activity, each with its models: three queries."""
    extra = window_extra(environment, query.window)
    page, has_more = _page(features_grouped(environment, query, extra=extra), query, limit)
    return FeatureTable(
        rows=feature_rows(environment, query.window, page, extra=extra), has_more=has_more
    )


def feature_table_all(
    environment: Environment, query: TableQuery, *, chunk: int = 500
) -> Iterator[FeatureRow]:
    extra = window_extra(environment, query.window)
    for grouped in _chunks(features_grouped(environment, query, extra=extra), chunk):
        yield from feature_rows(environment, query.window, grouped, extra=extra)


def feature_tops(
    environment: Environment, window: Window, *, sorts: Sequence[str], limit: int
) -> Tops:
    """:func:`feature_table`'s first ``limit`` rows under each sort, and the number of
    active features: three queries for all the sorts."""
    extra = window_extra(environment, window)
    count, active, grouped = _tops(
        environment,
        window,
        key="feature_id",
        sorts=sorts,
        limit=limit,
        extra=extra.by_feature(),
    )
    unique = {row["feature_id"]: row for rows in grouped.values() for row in rows}
    named = {
        row.feature.pk: row
        for row in feature_rows(environment, window, [*unique.values()], extra=extra)
    }
    return Tops(
        count,
        {
            sort: [named[row["feature_id"]] for row in rows if row["feature_id"] in named]
            for sort, rows in grouped.items()
        },
        active,
    )
