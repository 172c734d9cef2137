"""Steps that other apps add to ingestion, so the ledger never imports them.

The ingestion pipeline (``ingest.py``) knows every step it runs itself
(validate, resolve, price, store). Platform apps (entitlements: plan revenue,
usage caps, credits, reservations, usage counters) sit *above* the ledger in
the dependency layers (STYLE.md), so they register an :class:`IngestStep` from
their ``AppConfig.ready`` and the pipeline calls every registered step at three
points of each request:

1. ``before_store(batch)``: inside the request's transaction, after customers
   and features are resolved, before the events are written. A step may set an
   item's revenue (``revenue_usd`` / ``revenue_source``), its ``flags`` (stamped
   on the stored event) and ``reservation_id``, and add fields to its answer
   (``answer``). It may take locks (they are held until commit).
2. ``after_store(batch)``: still inside the transaction; ``item.event_id`` is set
   for the events that were stored (None for duplicates). Writes made here
   (e.g. credit deductions) commit or roll back with the events.
3. ``after_commit(batch)``: after the transaction committed, before the answer
   is returned (e.g. counters in Redis: the next request sees them).

Cost when nothing applies: :func:`steps_for` asks each step ``wants(environment)``
first; a step answers from a per-process cache, so an environment that uses
none of them pays nothing. Flags and reservation ids set by steps are written
by :func:`write_annotations` in one statement, only for the items that have any.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from django.db import connection, transaction

from .models import RevenueSource

if TYPE_CHECKING:
    from apps.accounts.models import Environment

    from .validation import EventInput


@dataclasses.dataclass(slots=True)
class Item:
    """One event moving through the pipeline."""

    index: int  # position in the request (0 for a single event)
    event: EventInput
    key: str  # idempotency key (sent or generated)
    customer_id: uuid.UUID
    feature_id: uuid.UUID
    revenue_usd: Decimal | None
    revenue_source: str
    duplicate_in_batch: bool = False  # repeats an earlier item's key: never stored
    flags: dict[str, Any] = dataclasses.field(default_factory=dict)
    reservation_id: uuid.UUID | None = None
    answer: dict[str, Any] = dataclasses.field(default_factory=dict)
    event_id: int | None = None  # set after the store; None for a duplicate


@dataclasses.dataclass(slots=True)
class Batch:
    environment: Environment
    items: list[Item]
    received_at: dt.datetime
    # Steps keep what they need between their hooks here, under their own name.
    state: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def stored(self) -> list[Item]:
        return [item for item in self.items if item.event_id is not None]


class IngestStep(Protocol):
    name: str

    def wants(self, environment: Environment) -> bool: ...

    def before_store(self, batch: Batch) -> None: ...

    def after_store(self, batch: Batch) -> None: ...

    def after_commit(self, batch: Batch) -> None: ...


_steps: list[IngestStep] = []


def register(step: IngestStep) -> None:
    """Add a step (idempotent by name: re-registering replaces it)."""
    _steps[:] = [s for s in _steps if s.name != step.name]
    _steps.append(step)


def steps_for(environment: Environment) -> list[IngestStep]:
    """The registered steps that have work in this environment (usually none)."""
    if not _steps:
        return []
    return [step for step in _steps if step.wants(environment)]


def new_item(
    index: int, event: EventInput, key: str, customer_id: uuid.UUID, feature_id: uuid.UUID
) -> Item:
    revenue = event.revenue_usd
    return Item(
        index=index,
        event=event,
        key=key,
        customer_id=customer_id,
        feature_id=feature_id,
        revenue_usd=revenue,
        revenue_source="" if revenue is None else RevenueSource.EXPLICIT.value,
    )


def run_before_store(steps: Sequence[IngestStep], batch: Batch) -> None:
    for step in steps:
        step.before_store(batch)


def run_after_store(steps: Sequence[IngestStep], batch: Batch) -> None:
    for step in steps:
        step.after_store(batch)
    write_annotations(batch)


def run_after_commit(steps: Sequence[IngestStep], batch: Batch) -> None:
    """Run the steps' ``after_commit`` once the request's transaction has committed: at
    once when it has (the usual case), or at the commit of a caller's enclosing
    transaction (never, if that one rolls back)."""

    def run() -> None:
        for step in steps:
            step.after_commit(batch)

    transaction.on_commit(run)


_ANNOTATE_SQL = """
UPDATE events_event AS e
   SET flags = e.flags || (a->>2)::jsonb,
       reservation_id = coalesce((a->>3)::uuid, e.reservation_id)
  FROM jsonb_array_elements(%s::jsonb) AS a
 WHERE e.environment_id = %s
   AND e.id = (a->>0)::bigint
   AND e.occurred_at = (a->>1)::timestamptz
"""


def write_annotations(batch: Batch) -> int:
    """Stamp the steps' flags and reservation ids on the stored events (one statement,
    only for the items that have any; the key includes ``occurred_at`` so only the
    event's partition is touched)."""
    rows = [
        [
            item.event_id,
            item.event.occurred_at.isoformat(),
            json.dumps(item.flags, separators=(",", ":")),
            str(item.reservation_id) if item.reservation_id else None,
        ]
        for item in batch.items
        if item.event_id is not None and (item.flags or item.reservation_id)
    ]
    if not rows:
        return 0
    with connection.cursor() as cur:
        cur.execute(_ANNOTATE_SQL, [json.dumps(rows), batch.environment.pk])
        return cur.rowcount
