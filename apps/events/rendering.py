"""Events on the wire: one flat camelCase object, amounts as decimal strings (USD)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from . import flags
from .ingest import Recorded
from .models import CostSource, Event


def _margin(revenue: Decimal | None, cost: Decimal | None) -> Decimal | None:
    # Margin needs both sides; an unknown cost never becomes a zero cost.
    if revenue is None or cost is None:
        return None
    return revenue - cost


ESTIMATE_BASIS = "usage_units_as_input_tokens"
EXACT_WITH = (
    "This cost is an estimate: usageUnits was priced as input tokens. Send inputTokens and "
    "outputTokens (and any cache or reasoning tokens) for an exact cost."
)


def cost_estimate(source: str, usage_units: Decimal) -> dict[str, Any] | None:
    """How an estimated cost was found and how to make it exact (None: not an estimate)."""
    if source != CostSource.ESTIMATED:
        return None
    return {"basis": ESTIMATE_BASIS, "inputTokens": int(usage_units), "exactWith": EXACT_WITH}


def render_recorded(recorded: Recorded) -> dict[str, Any]:
    """The answer to ``POST /api/v1/client/events``, from what was just stored.

    Pipeline steps (plan revenue, caps, credits) may set the revenue and add fields.
    """
    event, pricing, item = recorded.event, recorded.pricing, recorded.item
    revenue = event.revenue_usd if item is None else item.revenue_usd
    body = {
        "id": str(recorded.id),
        "eventIdempotencyKey": recorded.key,
        "eventName": event.event_name,
        "customerReferenceId": event.customer_ref,
        "featureKey": event.feature_key,
        "occurredAt": event.occurred_at,
        "model": event.model or None,
        "modelProvider": pricing.provider or None,
        "usageUnits": event.usage_units,
        "inputTokens": event.input_tokens,
        "outputTokens": event.output_tokens,
        "cacheReadTokens": event.cache_read_tokens,
        "cacheWriteTokens": event.cache_write_tokens,
        "reasoningTokens": event.reasoning_tokens,
        "costAmount": pricing.cost_usd,
        "costSource": pricing.source,
        "unpricedReason": pricing.unpriced_reason or None,
        "costEstimate": cost_estimate(pricing.source, event.usage_units),
        "priceVersionId": pricing.price_version_id,
        "revenueAmount": revenue,
        "revenueSource": (item.revenue_source if item else "explicit" if revenue else "") or None,
        "margin": _margin(revenue, pricing.cost_usd),
        "durationMs": event.duration_ms,
        "traceId": event.trace_id or None,
        "meta": event.meta,
    }
    if item is not None:
        body.update(item.answer)
    return body


def render_event(event: Event, *, customer_reference_id: str, feature_key: str) -> dict[str, Any]:
    """A stored event (for lists and detail reads), same shape as ``render_recorded``."""
    return {
        "id": str(event.id),
        "eventIdempotencyKey": event.idempotency_key,
        "eventName": event.event_name,
        "customerReferenceId": customer_reference_id,
        "featureKey": feature_key,
        "occurredAt": event.occurred_at,
        "receivedAt": event.received_at,
        "model": event.model or None,
        "modelProvider": event.provider or None,
        "usageUnits": event.usage_units,
        "inputTokens": event.input_tokens,
        "outputTokens": event.output_tokens,
        "cacheReadTokens": event.cache_read_tokens,
        "cacheWriteTokens": event.cache_write_tokens,
        "reasoningTokens": event.reasoning_tokens,
        "costAmount": event.cost_usd,
        "costSource": event.cost_source,
        "unpricedReason": event.unpriced_reason or None,
        "costEstimate": cost_estimate(event.cost_source, event.usage_units),
        "priceVersionId": event.price_version_id,
        "revenueAmount": event.revenue_usd,
        "revenueSource": event.revenue_source or None,
        "margin": _margin(event.revenue_usd, event.cost_usd),
        "durationMs": event.duration_ms,
        "traceId": event.trace_id or None,
        "meta": event.meta,
        "flags": flags.public(event.flags),
        "reservationId": str(event.reservation_id) if event.reservation_id else None,
    }
