"""One event per call, through the ingestion service, and the budget settled with it.

The event carries the call's API key, customer, feature, trace, model, provider,
duration, the provider's token counts and its raw usage (in ``meta``), never a prompt
or an answer. It is priced by the ingestion service from the same catalog as any
event. Its write, the key's spend and the reservation's release are one transaction;
the Redis side of the budget is settled after it commits.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import close_old_connections, transaction

from apps.apikeys.models import ApiKey
from apps.apikeys.services import apikey_record_spend
from apps.events.errors import DuplicateEvent
from apps.events.ingest import event_record
from apps.events.prices import price_event

from . import budgets
from .usage import Tokens

logger = logging.getLogger(__name__)

UNASSIGNED = "unassigned"


@dataclass
class Attribution:
    customer: str = UNASSIGNED
    feature: str = UNASSIGNED
    trace: str = ""
    event_key: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class CallRecord:
    """What the gateway knows of a finished call."""

    key: ApiKey
    attribution: Attribution
    provider: str
    surface: str
    model: str
    occurred_at: dt.datetime
    duration_ms: int
    status: str
    upstream_status: int
    tokens: Tokens
    estimated: bool
    raw_usage: dict[str, Any] | None
    reservation: budgets.Reservation | None = None
    attempt: int = 1


@dataclass
class Outcome:
    event_id: int | None
    cost_usd: Decimal | None
    remaining_usd: Decimal | None


def event_body(call: CallRecord) -> dict[str, Any]:
    tokens = call.tokens
    meta: dict[str, Any] = {
        **call.attribution.meta,
        "gateway": {
            "surface": call.surface,
            "status": call.status,
            "upstreamStatus": call.upstream_status,
            "usageEstimated": call.estimated,
            "attempt": call.attempt,
        },
        "usage": call.raw_usage,
    }
    body: dict[str, Any] = {
        "eventName": f"gateway.{call.provider}.{call.surface}",
        "customerReferenceId": call.attribution.customer,
        "featureKey": call.attribution.feature,
        "occurredAt": call.occurred_at.isoformat(),
        "model": call.model,
        "modelProvider": call.provider,
        "inputTokens": tokens.input,
        "outputTokens": tokens.output,
        "cacheReadTokens": tokens.cache_read,
        "cacheWriteTokens": tokens.cache_write,
        "reasoningTokens": min(tokens.reasoning, tokens.output),
        "durationMs": max(call.duration_ms, 0),
        "meta": meta,
    }
    if call.attribution.trace:
        body["traceId"] = call.attribution.trace
    if call.attribution.event_key:
        body["eventIdempotencyKey"] = call.attribution.event_key
    return body


def record_call(call: CallRecord) -> Outcome:
    """Store the call's event, add its cost to the key's spend and settle its reservation
    (blocking: run in a thread). A duplicate event key still settles: the provider
    billed the call."""
    close_old_connections()
    try:
        return _record(call)
    finally:
        close_old_connections()


def record_call_or_log(call: CallRecord) -> Outcome:
    """``record_call``; when it fails (PostgreSQL down, an event the ledger refuses), the
    event is logged whole at ERROR (a JSON line ``gateway-unrecorded-event``) so that it
    can be replayed through ``POST /api/events/ingest``, and its reservation is left to
    expire (the budget errs on the side of refusing)."""
    try:
        return record_call(call)
    except Exception:
        logger.exception(
            "gateway-unrecorded-event %s",
            json.dumps({"apiKeyId": str(call.key.pk), "event": event_body(call)}),
        )
        return Outcome(event_id=None, cost_usd=None, remaining_usd=None)


def _record(call: CallRecord) -> Outcome:
    if call.estimated:
        logger.warning(
            "gateway: %s %s reported no usage; event tokens estimated (key %s)",
            call.provider,
            call.model,
            call.key.pk,
        )
    reservation = call.reservation
    event_id, cost = None, None
    with transaction.atomic():
        try:
            recorded = event_record(
                environment=call.key.environment, body=event_body(call), api_key_id=call.key.pk
            )
            event_id, cost = recorded.id, recorded.pricing.cost_usd
        except DuplicateEvent:
            cost = None
        if reservation is not None:
            # Unpriced (refused up front under a budget) or a duplicate: hold the worst case.
            spend = cost if cost is not None else reservation.amount_usd
            apikey_record_spend(key=call.key, amount_usd=spend, now=reservation.window_start)
            budgets.settle_in_database(reservation)
        elif cost is not None:
            apikey_record_spend(key=call.key, amount_usd=cost, now=call.occurred_at)
    remaining = None
    if reservation is not None:
        spend = cost if cost is not None else reservation.amount_usd
        budgets.settle_redis(reservation, call.key, spend)
        remaining = budgets.remaining_after(reservation, spend)
    return Outcome(event_id=event_id, cost_usd=cost, remaining_usd=remaining)


def release(reservation: budgets.Reservation, key: ApiKey) -> None:
    """A call that the provider did not bill (refused, failed before any byte): the
    reservation goes back whole (blocking: run in a thread)."""
    close_old_connections()
    try:
        with transaction.atomic():
            budgets.settle_in_database(reservation)
        budgets.settle_redis(reservation, key, Decimal(0))
    finally:
        close_old_connections()


@dataclass(frozen=True)
class Quote:
    """Worst-case prices of one call: its prompt, and each output token."""

    input_usd: Decimal | None
    per_output_token_usd: Decimal | None

    @property
    def priced(self) -> bool:
        return self.input_usd is not None and self.per_output_token_usd is not None

    def worst(self, max_output_tokens: int) -> Decimal:
        assert self.input_usd is not None and self.per_output_token_usd is not None
        return self.input_usd + self.per_output_token_usd * max_output_tokens


_PROBE = 1_000_000


def quote(*, key: ApiKey, model: str, provider: str, input_tokens: int) -> Quote:
    """The catalog's price of ``input_tokens`` (all uncached: the dearest) and of one
    output token (counted as reasoning-free output at the model's rate)."""

    def cost(output: int) -> Decimal | None:
        return price_event(
            environment_id=key.environment_id,
            model=model,
            provider=provider,
            at=dt.datetime.now(dt.UTC),
            explicit_cost=None,
            input_tokens=input_tokens,
            output_tokens=output,
            cache_read_tokens=0,
            cache_write_tokens=0,
            reasoning_tokens=0,
        ).cost_usd

    base, probe = cost(0), cost(_PROBE)
    if base is None or probe is None:
        return Quote(None, None)
    return Quote(base, (probe - base) / _PROBE)
