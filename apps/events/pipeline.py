"""The ingestion pipeline's steps beyond the ledger's own, in the order settings declare.

The ingestion pipeline (``ingest.py``) knows every step it runs itself
(validate, resolve, price, store). Platform steps (entitlements: plan revenue,
usage caps, credits, reservations, usage counters; Stripe-driven billing: the
meter outbox) sit *above* the ledger in the dependency layers (STYLE.md), so the
ledger never imports them: ``settings.INGESTION_STEPS`` lists their classes by
dotted path, in the order they run, in one place (like ``MIDDLEWARE``). A step
that reads another's results names it in ``runs_after``; a list that puts it
first is refused when the steps are loaded (``ImproperlyConfigured``).

The pipeline calls every step that wants the environment at three points of
each request:

1. ``before_store(batch)``: inside the request's transaction, after customers
   and features are resolved, before the events are written. A step may set an
   item's revenue (``revenue_usd`` / ``revenue_source``), its ``flags`` (typed,
   ``flags.EventFlags``; stamped on the stored event) and ``reservation_id``, and
   add its typed results (``item.add``). It may take locks (held until commit).
2. ``after_store(batch)``: still inside the transaction; ``item.event_id`` is set
   for the events that were stored (None for duplicates). Writes made here
   (e.g. credit deductions) commit or roll back with the events.
3. ``after_commit(batch)``: after the transaction committed, before the answer
   is returned (e.g. counters in Redis: the next request sees them).

Steps talk to each other and to the answer only through typed results: each is a
dataclass with ``answer_fields()`` (the camelCase fields it adds to the event's
answer); a later step reads an earlier one's with ``item.result(ResultType)``.

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
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import connection, transaction
from django.utils.module_loading import import_string

from .flags import EventFlags
from .models import RevenueSource

if TYPE_CHECKING:
    from apps.accounts.models import Environment

    from .validation import EventInput


class StepResult(Protocol):
    """What a step found or did for one event (a dataclass of the step's own)."""

    def answer_fields(self) -> dict[str, Any]:
        """The camelCase fields this result adds to the event's answer."""
        ...


R = TypeVar("R", bound=StepResult)


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
    flags: EventFlags = dataclasses.field(default_factory=EventFlags)
    reservation_id: uuid.UUID | None = None
    # The steps' typed results, in the order they were added (step order).
    results: list[StepResult] = dataclasses.field(default_factory=list)
    event_id: int | None = None  # set after the store; None for a duplicate

    def add(self, result: StepResult) -> None:
        self.results.append(result)

    def result(self, kind: type[R]) -> R | None:
        """The result of type ``kind`` a step added for this event (None: none did)."""
        for result in self.results:
            if isinstance(result, kind):
                return result
        return None

    @property
    def answer(self) -> dict[str, Any]:
        """The fields the steps' results add to the event's answer, in step order."""
        answer: dict[str, Any] = {}
        for result in self.results:
            answer.update(result.answer_fields())
        return answer


@dataclasses.dataclass(slots=True)
class Batch:
    environment: Environment
    items: list[Item]
    received_at: dt.datetime
    # Steps keep what they need between their hooks here, under their own name.
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    api_key_id: uuid.UUID | None = None  # the key that wrote the batch (None: the product)

    @property
    def stored(self) -> list[Item]:
        return [item for item in self.items if item.event_id is not None]


class IngestStep(Protocol):
    name: str
    # Names of the steps whose results this one reads: they must come earlier.
    runs_after: tuple[str, ...]

    def wants(self, environment: Environment) -> bool: ...

    def before_store(self, batch: Batch) -> None: ...

    def after_store(self, batch: Batch) -> None: ...

    def after_commit(self, batch: Batch) -> None: ...


_loaded: list[IngestStep] | None = None


def load_steps(paths: Sequence[str]) -> list[IngestStep]:
    """Instantiate the step classes at ``paths`` (dotted), checking their order."""
    steps: list[IngestStep] = [import_string(path)() for path in paths]
    seen: set[str] = set()
    for step in steps:
        if step.name in seen:
            raise ImproperlyConfigured(f"INGESTION_STEPS names the step {step.name!r} twice.")
        missing = [name for name in step.runs_after if name not in seen]
        if missing:
            raise ImproperlyConfigured(
                f"INGESTION_STEPS: {step.name!r} reads the results of {missing}, which must"
                " come before it."
            )
        seen.add(step.name)
    return steps


def steps() -> list[IngestStep]:
    """``settings.INGESTION_STEPS``, loaded once per process (again if the setting changes)."""
    global _loaded  # noqa: PLW0603 - a per-process cache of the configured steps
    if _loaded is None:
        _loaded = load_steps(settings.INGESTION_STEPS)
    return _loaded


def _forget_steps(*, setting: str, **_kwargs: Any) -> None:
    global _loaded  # noqa: PLW0603
    if setting == "INGESTION_STEPS":
        _loaded = None


setting_changed.connect(_forget_steps)


def steps_for(environment: Environment) -> list[IngestStep]:
    """The configured steps that have work in this environment (usually none)."""
    configured = steps()
    if not configured:
        return []
    return [step for step in configured if step.wants(environment)]


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
            json.dumps(item.flags.to_json(), separators=(",", ":")),
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
