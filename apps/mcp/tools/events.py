"""Recording usage: one event (as ``POST /api/v1/client/events``) or a batch (as
``POST /api/events/ingest``), through the same ingestion pipeline
(``apps.events.ingest``). An event's ``eventIdempotencyKey`` makes a retry safe: the
same key in the same environment is stored once (a repeat answers ``duplicate_event``)."""

from __future__ import annotations

from typing import Annotated, Any

from django.utils import timezone
from pydantic import Field

from apps.apikeys import scopes as S
from apps.core.errors import PayloadTooLarge, ValidationFailed
from apps.events.ingest import MAX_BATCH, event_record, events_ingest
from apps.events.rendering import render_recorded
from apps.mcp.calls import ToolAnswer, current_caller, tool
from apps.mcp.registry import ToolSpec

Amount = Annotated[
    str | None, Field(description='US dollars as a decimal string (not cents), e.g. "0.0075".')
]
IdempotencyKey = Annotated[
    str | None,
    Field(description="Optional: the same key and arguments within 24 h replay the first answer."),
]


@tool(ToolSpec("ingestEvent", "Record one event", S.EVENTS_WRITE, kind="write"))
def ingest_event(
    *,
    eventIdempotencyKey: Annotated[
        str, Field(description="Unique per event: a retry with the same key is stored once.")
    ],
    eventName: str,
    customerReferenceId: str,
    featureKey: str,
    occurredAt: Annotated[str | None, Field(description="ISO 8601; default: now.")] = None,
    model: str | None = None,
    modelProvider: str | None = None,
    inputTokens: int | None = None,
    outputTokens: int | None = None,
    cacheReadTokens: int | None = None,
    cacheWriteTokens: int | None = None,
    reasoningTokens: int | None = None,
    usageUnits: Annotated[str | None, Field(description="Units used, a decimal string.")] = None,
    costAmount: Amount = None,
    revenueAmount: Amount = None,
    durationMs: int | None = None,
    traceId: str | None = None,
    meta: dict[str, Any] | None = None,
    idempotencyKey: IdempotencyKey = None,
) -> ToolAnswer:
    """Record one AI request as an event: the customer, feature and model, token usage,
    and optionally its cost and revenue (without costAmount the server prices the
    tokens from the model price catalog; a model without a price is stored as unpriced,
    never as free)."""
    body: dict[str, Any] = {
        name: value
        for name, value in {
            "eventIdempotencyKey": eventIdempotencyKey,
            "eventName": eventName,
            "customerReferenceId": customerReferenceId,
            "featureKey": featureKey,
            "occurredAt": occurredAt or timezone.now().isoformat(),
            "model": model,
            "modelProvider": modelProvider,
            "inputTokens": inputTokens,
            "outputTokens": outputTokens,
            "cacheReadTokens": cacheReadTokens,
            "cacheWriteTokens": cacheWriteTokens,
            "reasoningTokens": reasoningTokens,
            "usageUnits": usageUnits,
            "costAmount": costAmount,
            "revenueAmount": revenueAmount,
            "durationMs": durationMs,
            "traceId": traceId,
            "meta": meta,
        }.items()
        if value is not None
    }
    caller = current_caller()
    recorded = event_record(environment=caller.environment, body=body, api_key_id=caller.key.pk)
    data = render_recorded(recorded)
    cost = data.get("costAmount")
    text = (
        f"Recorded event {data.get('id')} for customer {customerReferenceId}, feature "
        f"{featureKey}: cost {'$' + str(cost) if cost is not None else 'unknown (unpriced)'}."
    )
    return ToolAnswer(data, text, "/dashboard/events/")


@tool(ToolSpec("ingestEvents", "Record a batch of events", S.EVENTS_WRITE, kind="write"))
def ingest_events(
    *,
    events: Annotated[
        list[dict[str, Any]],
        Field(
            description="1 to 1000 events, each with the fields of ingestEvent "
            "(occurredAt defaults to now)."
        ),
    ],
    idempotencyKey: IdempotencyKey = None,
) -> ToolAnswer:
    """Record up to 1000 events: each is accepted, a duplicate (its key is already
    recorded) or rejected with field errors; a rejected item does not stop the others."""
    if not events:
        raise ValidationFailed(fields={"events": ["At least one event is required."]})
    if len(events) > MAX_BATCH:
        raise PayloadTooLarge(f"A batch may hold at most {MAX_BATCH} events.")
    now = timezone.now().isoformat()
    items = [
        {"occurredAt": now, **item} if isinstance(item, dict) and "occurredAt" not in item else item
        for item in events
    ]
    caller = current_caller()
    result = events_ingest(environment=caller.environment, items=items, api_key_id=caller.key.pk)
    data = {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": result.rejected,
        "events": [
            {**item, "id": str(item["id"]) if item["id"] is not None else None}
            for item in result.events
        ],
        "errors": result.errors,
    }
    text = (
        f"{result.accepted} accepted, {result.duplicates} duplicates, {result.rejected} rejected."
    )
    return ToolAnswer(data, text, "/dashboard/events/")
