"""Streamed CSV exports of the read API's tables and of raw events.

Rows are produced by the same selectors as the JSON answers (so the numbers
agree), read in batches (keyset batches for events, a server-side cursor for
aggregate tables), and written one line at a time: memory stays constant.
Money columns are plain decimal strings in USD.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.http import StreamingHttpResponse

from apps.core.money import decimal_str
from apps.events.models import Event
from apps.events.rendering import render_event

from .params import TableQuery
from .prices import model_price_in_force
from .rendering import latency_ms, render_stored_event
from .selectors import (
    EventFilters,
    Totals,
    customer_table_all,
    events_batches,
    feature_table_all,
    model_table_all,
)

if TYPE_CHECKING:
    from apps.accounts.models import Environment

# Spreadsheets run a cell that starts with one of these as a formula (CSV injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


# Rows are written to the response in chunks of this many lines (one chunk per
# line would cost a WSGI write each).
LINES_PER_CHUNK = 500


def cell(value: Any) -> str:
    kind = type(value)
    if kind is str:
        # Caller-supplied text (references, names, event names) is never a formula.
        return "'" + value if value.startswith(_FORMULA_PREFIXES) else value
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        return str(value)
    if isinstance(value, Decimal):
        return decimal_str(value)
    if isinstance(value, dt.datetime):
        text = value.astimezone(dt.UTC).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict | list):
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def csv_response(
    filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]
) -> StreamingHttpResponse:
    def chunks() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        yield buffer.getvalue()  # the header at once: the download starts before the query ends
        buffer.seek(0)
        buffer.truncate()
        lines = 0
        for row in rows:
            writer.writerow([cell(value) for value in row])
            lines += 1
            if lines == LINES_PER_CHUNK:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
                lines = 0
        if lines:
            yield buffer.getvalue()

    response = StreamingHttpResponse(chunks(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


TOTALS_HEADER = (
    "events",
    "cost",
    "revenue",
    "margin",
    "marginPct",
    "unpricedEvents",
    "estimatedCost",
    "usageUnits",
)


def _totals(totals: Totals) -> list[Any]:
    return [
        totals.events,
        totals.cost,
        totals.revenue,
        totals.margin,
        totals.margin_pct,
        totals.unpriced,
        totals.estimated_cost,
        totals.usage_units,
    ]


def customers_csv(environment: Environment, query: TableQuery) -> StreamingHttpResponse:
    header = ("customerReferenceId", "name", "email", *TOTALS_HEADER, "lastSeen")
    rows = (
        [
            row.customer.reference_id,
            f"{row.customer.first_name} {row.customer.last_name}".strip(),
            row.customer.email,
            *_totals(row.totals),
            row.last_seen or row.last_bucket,
        ]
        for row in customer_table_all(environment, query)
    )
    return csv_response("customers.csv", header, rows)


def features_csv(environment: Environment, query: TableQuery) -> StreamingHttpResponse:
    """One ``feature`` line (the feature's totals) followed by one ``model`` line per model.

    ``row`` tells them apart: a ``model`` line with an empty ``model`` sums the
    feature's events that named no model.
    """
    header = ("row", "featureKey", "name", "model", "modelProvider", *TOTALS_HEADER, "lastSeen")

    def rows() -> Iterator[list[Any]]:
        for row in feature_table_all(environment, query):
            yield [
                "feature",
                row.feature.key,
                row.feature.name,
                "",
                "",
                *_totals(row.totals),
                row.last_seen or row.last_bucket,
            ]
            for piece in row.models:
                yield [
                    "model",
                    row.feature.key,
                    row.feature.name,
                    piece.model,
                    piece.provider,
                    *_totals(piece.totals),
                    "",
                ]

    return csv_response("features.csv", header, rows())


PRICE_HEADER = (
    "priceSource",
    "priceVersionId",
    "catalogInputCostPerMillion",
    "catalogOutputCostPerMillion",
    "discountPercent",
    "customInputCostPerMillion",
    "customOutputCostPerMillion",
)


def _price(price: dict[str, Any] | None) -> list[Any]:
    """The JSON ``priceInForce`` flattened (empty cells when the model has no price)."""
    if price is None:
        return [None] * len(PRICE_HEADER)
    catalog = price["catalog"] or {}
    custom = price["customRates"] or {}
    return [
        price["source"],
        catalog.get("priceVersionId"),
        catalog.get("inputCostPerMillion"),
        catalog.get("outputCostPerMillion"),
        price["discountPercent"],
        custom.get("inputCostPerMillion"),
        custom.get("outputCostPerMillion"),
    ]


def models_csv(
    environment: Environment, query: TableQuery, *, now: dt.datetime
) -> StreamingHttpResponse:
    header = (
        "model",
        "modelProvider",
        *TOTALS_HEADER,
        "avgCostPerEvent",
        "customers",
        "features",
        "inputTokens",
        "outputTokens",
        "latencyAvgMs",
        "latencyP50Ms",
        "latencyP95Ms",
        "latencyP99Ms",
        "lastSeen",
        *PRICE_HEADER,
    )

    def rows() -> Iterator[list[Any]]:
        for row in model_table_all(environment, query):
            latency = row.latency_ms or (None, None, None)
            price = model_price_in_force(environment, row.provider, row.model, now)
            yield [
                row.model,
                row.provider,
                *_totals(row.totals),
                row.totals.avg_cost_per_priced_event,
                row.customers,
                row.features,
                row.input_tokens,
                row.output_tokens,
                row.avg_duration_ms,
                *(latency_ms(value) for value in latency),
                row.last_seen or row.last_bucket,
                *_price(price),
            ]

    return csv_response("models.csv", header, rows())


def _event_fields() -> list[str]:
    """The JSON fields of a stored event, in order (rendered from a blank event)."""
    return list(render_event(Event(), customer_reference_id="", feature_key=""))


def events_csv(environment: Environment, filters: EventFilters) -> StreamingHttpResponse:
    """Every matching event, newest first; the columns are the JSON event's fields.

    Rows are the JSON rendering itself (``render_event``), so the two cannot drift.
    The first batch is read here, before the response starts.
    """

    def rendered() -> Iterator[dict[str, Any]]:
        for batch, names in events_batches(environment, filters):
            for event in batch:
                yield render_stored_event(event, names)

    items = rendered()
    first = next(items, None)
    header = list(first) if first is not None else _event_fields()

    def rows() -> Iterator[list[Any]]:
        if first is None:
            return
        yield [first.get(name) for name in header]
        for item in items:
            yield [item.get(name) for name in header]

    return csv_response("events.csv", header, rows())
