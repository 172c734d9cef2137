"""The read API's objects on the wire: camelCase, amounts (USD) as Decimal -> decimal strings."""

from __future__ import annotations

from typing import Any

from apps.events.models import Event
from apps.events.rendering import render_event

from .params import Window
from .selectors import (
    CustomerDetail,
    CustomerRow,
    EventNames,
    FeatureBreakdown,
    FeatureRow,
    ModelRow,
    ModelSlice,
    Overview,
    Totals,
    Trace,
)


def render_window(window: Window) -> dict[str, Any]:
    return {"from": window.start, "to": window.end}


def render_totals(totals: Totals) -> dict[str, Any]:
    return {
        "events": totals.events,
        "cost": totals.cost,
        "revenue": totals.revenue,
        "margin": totals.margin,
        "marginPct": totals.margin_pct,
        "unpricedEvents": totals.unpriced,
        "estimatedCost": totals.estimated_cost,
        "usageUnits": totals.usage_units,
    }


def render_overview(data: Overview) -> dict[str, Any]:
    return {
        **render_window(data.window),
        **render_totals(data.totals),
        "customers": data.customers,
        "features": data.features,
        "models": data.models,
        "daily": [
            {
                "date": day.date,
                "events": day.totals.events,
                "cost": day.totals.cost,
                "revenue": day.totals.revenue,
                "margin": day.totals.margin,
                "unpricedEvents": day.totals.unpriced,
            }
            for day in data.daily
        ],
    }


def render_customer_row(row: CustomerRow) -> dict[str, Any]:
    customer = row.customer
    return {
        "customerReferenceId": customer.reference_id,
        "name": f"{customer.first_name} {customer.last_name}".strip() or None,
        "email": customer.email or None,
        **render_totals(row.totals),
        # Precise (latest event in the window); the hour bucket if that probe found none.
        "lastSeen": row.last_seen or row.last_bucket,
    }


def render_model_slice(piece: ModelSlice) -> dict[str, Any]:
    return {
        "model": piece.model or None,
        "modelProvider": piece.provider or None,
        **render_totals(piece.totals),
    }


def render_feature_breakdown(feature: FeatureBreakdown) -> dict[str, Any]:
    return {
        "featureKey": feature.key,
        "name": feature.name or None,
        **render_totals(feature.totals),
        "models": [render_model_slice(piece) for piece in feature.models],
    }


def render_customer_detail(detail: CustomerDetail) -> dict[str, Any]:
    customer = detail.customer
    return {
        **render_window(detail.window),
        "customerReferenceId": customer.reference_id,
        "name": f"{customer.first_name} {customer.last_name}".strip() or None,
        "email": customer.email or None,
        **render_totals(detail.totals),
        "unattributedRevenue": detail.unattributed_revenue,
        "lastSeen": detail.last_seen,
        "features": [render_feature_breakdown(feature) for feature in detail.features],
    }


def render_feature_row(row: FeatureRow) -> dict[str, Any]:
    return {
        "featureKey": row.feature.key,
        "name": row.feature.name or None,
        **render_totals(row.totals),
        "lastSeen": row.last_seen or row.last_bucket,
        "models": [render_model_slice(piece) for piece in row.models],
    }


def latency_ms(value: float | None) -> float | int | None:
    """A latency in ms, to 0.1 ms (a duration, not money: a JSON number)."""
    if value is None:
        return None
    rounded = round(value, 1)
    return int(rounded) if rounded == int(rounded) else rounded


def render_model_row(row: ModelRow, price: dict[str, Any] | None) -> dict[str, Any]:
    latency = row.latency_ms or (None, None, None)
    average = float(row.avg_duration_ms) if row.avg_duration_ms is not None else None
    return {
        "model": row.model or None,
        "modelProvider": row.provider or None,
        **render_totals(row.totals),
        "avgCostPerEvent": row.totals.avg_cost_per_priced_event,
        "customers": row.customers,
        "features": row.features,
        "inputTokens": row.input_tokens,
        "outputTokens": row.output_tokens,
        "latencyMs": {
            "avg": latency_ms(average),
            "p50": latency_ms(latency[0]),
            "p95": latency_ms(latency[1]),
            "p99": latency_ms(latency[2]),
        },
        "lastSeen": row.last_seen or row.last_bucket,
        "priceInForce": price,
    }


def render_stored_event(event: Event, names: EventNames) -> dict[str, Any]:
    return render_event(
        event, customer_reference_id=names.customer(event), feature_key=names.feature(event)
    )


def render_trace(trace: Trace) -> dict[str, Any]:
    return {
        "traceId": trace.trace_id,
        "events": trace.event_count,
        "cost": trace.cost,
        "revenue": trace.revenue,
        "margin": trace.margin,
        "unpricedEvents": trace.unpriced,
        "startedAt": trace.started_at,
        "endedAt": trace.ended_at,
        # First start -> last end (occurredAt + durationMs), and the sum of durationMs.
        "spanMs": trace.span_ms,
        "durationMsSum": trace.duration_ms_sum,
        "truncated": trace.truncated,
        "items": [render_stored_event(event, trace.names) for event in trace.events],
    }
