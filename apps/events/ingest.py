"""The ingestion pipeline: the one place that knows every step of recording events.

    validate -> resolve customers/features -> price -> store (keys, events,
    rollups) -> answer

Round trips to PostgreSQL per request, whatever the batch size: customers and
features (0 when cached, else 2 each), one store statement (keys + events +
rollups, see ``store.py``), and the transaction's BEGIN/COMMIT -- unless every
customer and feature is cached and no pipeline step runs: then the store
statement is the only write, atomic by itself, and runs alone. Pricing runs
in process (the catalog is cached). Nothing is written per event.

All of a request's writes are atomic: a single event is stored with its
auto-created customer and feature, or nothing is.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.utils import timezone

from apps.core.errors import ValidationFailed

from . import pipeline
from .errors import DuplicateEvent
from .models import RevenueSource
from .prices import BatchPricer, InvalidUsage, Pricing
from .resolve import cached_ids, resolve_ids
from .store import store_events
from .validation import EventInput, parse_event

if TYPE_CHECKING:
    from apps.accounts.models import Environment

MAX_BATCH = 1000


@dataclass(slots=True)
class Recorded:
    """One event as stored (for the answer)."""

    id: int
    event: EventInput
    key: str
    pricing: Pricing
    # Set by registered pipeline steps (plan revenue, caps, credits...); None: none ran.
    item: pipeline.Item | None = None


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    # [{"index", "id", "idempotencyKey", "status"}] in request order.
    events: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


class _Duplicate(Exception):
    pass


def _new_key() -> str:
    return str(uuid.uuid4())


def _row(
    event: EventInput,
    key: str,
    customer_id: str,
    feature_id: str,
    pricing: Pricing,
    *,
    item: pipeline.Item | None = None,
) -> list[Any]:
    """The event as ``store.COLUMNS`` wants it (JSON-ready: decimals as exact strings)."""
    cost = pricing.cost_usd
    revenue = event.revenue_usd if item is None else item.revenue_usd
    revenue_source = "" if revenue is None else RevenueSource.EXPLICIT.value
    if item is not None:
        revenue_source = item.revenue_source
    return [
        key,
        event.event_name,
        event.occurred_at.isoformat(),
        customer_id,
        feature_id,
        event.model,
        pricing.provider,
        str(event.usage_units),
        event.input_tokens,
        event.output_tokens,
        event.cache_read_tokens,
        event.cache_write_tokens,
        event.reasoning_tokens,
        None if cost is None else str(cost),
        pricing.source,
        pricing.unpriced_reason,
        pricing.price_version_id,
        None if revenue is None else str(revenue),
        revenue_source,
        event.duration_ms,
        event.trace_id,
        event.meta_json,
    ]


def _price(pricer: BatchPricer, event: EventInput) -> Pricing:
    return pricer.price(
        model=event.model,
        provider=event.provider,
        at=event.occurred_at,
        explicit_cost=event.cost_usd,
        usage_units=event.usage_units if event.units_given else None,
        input_tokens=event.input_tokens,
        output_tokens=event.output_tokens,
        cache_read_tokens=event.cache_read_tokens,
        cache_write_tokens=event.cache_write_tokens,
        reasoning_tokens=event.reasoning_tokens,
    )


def existing_event_id(environment: Environment, key: str) -> int | None:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT event_id FROM events_eventkey"
            " WHERE environment_id = %s AND idempotency_key = %s",
            [environment.pk, key],
        )
        row = cur.fetchone()
    return row[0] if row else None


def event_record(
    *,
    environment: Environment,
    body: Any,
    api_key_id: uuid.UUID | None,
    idempotency_key: str | None = None,
) -> Recorded:
    """Record one event (``POST /api/v1/client/events``); DuplicateEvent if its key is taken.

    ``api_key_id``: the API key that wrote it (the request's key, the gateway's caller);
    None when the product itself writes it (no key). Stored on the event and its hourly
    rollup row. ``idempotency_key`` (the ``X-Idempotency-Key`` header) overrides the
    body's.
    """
    now = timezone.now()
    event, errors = parse_event(body, now=now, idempotency_key_override=idempotency_key)
    if event is None:
        raise ValidationFailed(fields=errors)
    key = event.idempotency_key or _new_key()
    pricing = _price(BatchPricer(environment.pk), event)
    steps = pipeline.steps_for(environment)
    batch = None
    customer_refs, feature_keys = {event.customer_ref}, {event.feature_key}
    # Nothing to create and no step to run: the store statement is the only
    # write, atomic by itself, so it needs no BEGIN/COMMIT round trips.
    cached = None if steps else cached_ids(environment, customer_refs, feature_keys)
    try:
        with transaction.atomic() if cached is None else contextlib.nullcontext():
            customers, features = cached or resolve_ids(
                environment=environment, customer_refs=customer_refs, feature_keys=feature_keys
            )
            customer_id, feature_id = customers[event.customer_ref], features[event.feature_key]
            item: pipeline.Item | None = None
            if steps:
                item = pipeline.new_item(0, event, key, customer_id, feature_id)
                batch = pipeline.Batch(environment, [item], now, api_key_id=api_key_id)
                pipeline.run_before_store(steps, batch)
            row = _row(event, key, str(customer_id), str(feature_id), pricing, item=item)
            stored = store_events(
                environment_id=environment.pk, rows=[row], received_at=now, api_key_id=api_key_id
            )
            if key not in stored:
                # Roll back the auto-created customer/feature too: nothing half-written.
                raise _Duplicate
            if batch is not None:
                batch.items[0].event_id = stored[key]
                pipeline.run_after_store(steps, batch)
    except _Duplicate:
        existing = existing_event_id(environment, key)
        raise DuplicateEvent(
            extra={
                "eventIdempotencyKey": key,
                "existingEventId": str(existing) if existing is not None else None,
            }
        ) from None
    if batch is not None:
        pipeline.run_after_commit(steps, batch)
        return Recorded(stored[key], event, key, pricing, batch.items[0])
    return Recorded(id=stored[key], event=event, key=key, pricing=pricing)


def events_ingest(
    *, environment: Environment, items: list[Any], api_key_id: uuid.UUID | None
) -> BatchResult:
    """Record a batch (``POST /api/events/ingest``): each item accepted, duplicate or rejected.

    A rejected item does not stop the others. An item whose key repeats an
    earlier item of the same batch is a duplicate of it (stored once).
    ``api_key_id``: the API key that wrote the batch, as in :func:`event_record`.
    """
    if not 1 <= len(items) <= MAX_BATCH:
        raise ValueError("batch size out of range")  # the view checks first
    now = timezone.now()
    pricer = BatchPricer(environment.pk)
    result = BatchResult()
    valid: list[tuple[int, EventInput, str]] = []
    pricings: list[Pricing] = []
    seen: set[str] = set()
    in_batch_duplicates: set[int] = set()
    for index, raw in enumerate(items):
        event, errors = parse_event(raw, now=now)
        if event is None:
            result.errors.append({"index": index, "fields": errors})
            continue
        try:
            pricings.append(_price(pricer, event))
        except InvalidUsage as exc:
            result.errors.append(
                {"index": index, "fields": exc.fields or {"_event": [exc.message]}}
            )
            continue
        key = event.idempotency_key or _new_key()
        if key in seen:
            in_batch_duplicates.add(index)
        else:
            seen.add(key)
        valid.append((index, event, key))

    stored: dict[str, int] = {}
    steps = pipeline.steps_for(environment) if valid else []
    batch = None
    if valid:
        customer_refs = {event.customer_ref for _, event, _ in valid}
        feature_keys = {event.feature_key for _, event, _ in valid}
        # As in event_record: with nothing to create and no step, one statement.
        cached = None if steps else cached_ids(environment, customer_refs, feature_keys)
        with transaction.atomic() if cached is None else contextlib.nullcontext():
            customers, features = cached or resolve_ids(
                environment=environment, customer_refs=customer_refs, feature_keys=feature_keys
            )
            step_items: list[pipeline.Item | None] = [None] * len(valid)
            if steps:
                for position, (index, event, key) in enumerate(valid):
                    customer_id = customers[event.customer_ref]
                    item = pipeline.new_item(
                        index, event, key, customer_id, features[event.feature_key]
                    )
                    item.duplicate_in_batch = index in in_batch_duplicates
                    step_items[position] = item
                batch = pipeline.Batch(
                    environment,
                    [i for i in step_items if i is not None],
                    now,
                    api_key_id=api_key_id,
                )
                pipeline.run_before_store(steps, batch)
            customer_ids = {ref: str(pk) for ref, pk in customers.items()}
            feature_ids = {key: str(pk) for key, pk in features.items()}
            rows = [
                _row(
                    event,
                    key,
                    customer_ids[event.customer_ref],
                    feature_ids[event.feature_key],
                    pricing,
                    item=item,
                )
                for (index, event, key), pricing, item in zip(
                    valid, pricings, step_items, strict=True
                )
                if index not in in_batch_duplicates
            ]
            stored = store_events(
                environment_id=environment.pk, rows=rows, received_at=now, api_key_id=api_key_id
            )
            if batch is not None:
                for item in batch.items:
                    if not item.duplicate_in_batch:
                        item.event_id = stored.get(item.key)
                pipeline.run_after_store(steps, batch)
        if batch is not None:
            pipeline.run_after_commit(steps, batch)

    answers: list[dict[str, Any]] = []
    extras = {item.index: item.answer for item in batch.items} if batch is not None else {}
    for index, _event, key in valid:
        event_id = stored.pop(key, None) if index not in in_batch_duplicates else None
        status = "accepted" if event_id is not None else "duplicate"
        if event_id is not None:
            result.accepted += 1
        else:
            result.duplicates += 1
        answer = {"index": index, "id": event_id, "idempotencyKey": key, "status": status}
        if event_id is not None and extras.get(index):
            answer.update(extras[index])
        answers.append(answer)
    result.events = answers
    result.rejected = len(result.errors)
    return result
