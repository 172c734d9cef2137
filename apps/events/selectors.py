"""Reads of single events and of what only the raw events know; sums go through
:mod:`apps.events.usage`.

Here: one event by id, event lists and traces, and the raw-event reads the
rollups cannot answer: the latest event of a customer, feature or model
(``lastSeen``), latency percentiles, the units credits did not cover and the
units beyond a usage cap (stamped on each event's ``flags`` by ingestion). Each
takes the environment (or its id) first.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from django.contrib.postgres.fields import ArrayField
from django.db import connection
from django.db.models import (
    Aggregate,
    BigIntegerField,
    Count,
    DateTimeField,
    DecimalField,
    FloatField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce

from apps.core.errors import NotFound
from apps.core.tenancy import get_scoped_or_404, scoped
from apps.customers.models import Customer
from apps.features.models import Feature

from . import flags
from .models import CostSource, Event

if TYPE_CHECKING:
    from apps.accounts.models import Environment

    from .usage import CustomerWindow


def recorded_keys(environment_id: uuid.UUID, keys: list[str]) -> set[str]:
    """Those of ``keys`` already recorded in the environment: one index look-up per key (a
    LATERAL ... LIMIT 1; with ``= ANY(keys)`` the planner may scan every key of the
    environment, or the table, which grows with the ledger)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT e.idempotency_key FROM unnest(%s::text[]) AS w(key)"
            " CROSS JOIN LATERAL (SELECT k.idempotency_key FROM events_eventkey AS k"
            " WHERE k.environment_id = %s AND k.idempotency_key = w.key LIMIT 1) AS e",
            [keys, environment_id],
        )
        return {row[0] for row in cur.fetchall()}


def event_get(environment: Environment, event_id: Any) -> Event:
    """One event by id (404 when it is another environment's or malformed)."""
    return get_scoped_or_404(Event, environment, pk=event_id)


class TimeWindow(Protocol):
    """``[start, end)`` (any object with these two attributes, e.g. an analytics Window)."""

    @property
    def start(self) -> dt.datetime: ...

    @property
    def end(self) -> dt.datetime: ...


# The trace view lists at most this many events (the totals always cover all).
TRACE_MAX_EVENTS = 1000
_SUM_FIELD = DecimalField(max_digits=38, decimal_places=12)


def _dec_sum(name: str) -> Coalesce:
    return Coalesce(Sum(name), Value(Decimal(0)), output_field=_SUM_FIELD)


def _int_sum(name: str) -> Coalesce:
    return Coalesce(Sum(name), Value(0), output_field=BigIntegerField())


# --- Latest events and latencies (what the rollups cannot say) ---------------------------------


def last_event_subquery(
    environment: Environment, start: dt.datetime, end: dt.datetime, **match: str
) -> Subquery:
    """Time of the outer row's latest event in ``[start, end)``: one probe of an
    ``(environment, column, occurred_at)`` index. ``match`` maps event columns to the
    outer query's columns (``customer_id="id"``)."""
    return Subquery(
        scoped(Event, environment)
        .filter(
            **{column: OuterRef(outer) for column, outer in match.items()},
            occurred_at__gte=start,
            occurred_at__lt=end,
        )
        .order_by("-occurred_at")
        .values("occurred_at")[:1],
        output_field=DateTimeField(),
    )


# Event columns a lastSeen probe may match on: each leads an (environment, column,
# occurred_at) index (provider only beside model).
_PROBE_COLUMNS = frozenset({"customer_id", "feature_id", "model", "provider"})


def last_seen_sql(
    environment: Environment, start: dt.datetime, end: dt.datetime, **match: str
) -> tuple[str, list[Any]]:
    """The probe of :func:`last_event_subquery` as SQL, for a caller's own statement: the
    latest ``occurred_at`` in ``[start, end)`` of the events whose columns equal the outer
    expressions in ``match`` (``customer_id="r.customer_id"``)."""
    if not match or not set(match) <= _PROBE_COLUMNS:
        raise ValueError(f"no index probes events by {sorted(match)!r}")
    equal = "".join(f" AND e.{column} = {outer}" for column, outer in match.items())
    sql = f"""(SELECT e.occurred_at FROM events_event e
              WHERE e.environment_id = %s{equal}
                AND e.occurred_at >= %s AND e.occurred_at < %s
              ORDER BY 1 DESC LIMIT 1)"""  # noqa: S608 - names are ours
    return sql, [environment.pk, start, end]


def last_event_at(
    environment: Environment, start: dt.datetime, end: dt.datetime, **match: Any
) -> dt.datetime | None:
    """Time of the latest event in ``[start, end)`` matching ``match`` (column values)."""
    return (
        scoped(Event, environment)
        .filter(**match, occurred_at__gte=start, occurred_at__lt=end)
        .order_by("-occurred_at")
        .values_list("occurred_at", flat=True)
        .first()
    )


class Percentiles(Aggregate):
    """``percentile_cont`` at p50, p95 and p99 in one sort (an array of ms)."""

    function = "percentile_cont"
    template = "%(function)s(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = ArrayField(FloatField())


def latency_percentiles(
    environment: Environment, start: dt.datetime, end: dt.datetime, models: Iterable[str]
) -> dict[tuple[str, str], tuple[float, float, float]]:
    """p50, p95 and p99 of ``durationMs`` per (provider, model) over the events of these
    models in ``[start, end)`` that carry one: one query, the ``(environment, model,
    occurred_at)`` index and the window bounding the scan."""
    latencies = (
        scoped(Event, environment)
        .filter(
            model__in=set(models),
            occurred_at__gte=start,
            occurred_at__lt=end,
            duration_ms__isnull=False,
        )
        .values("provider", "model")
        .annotate(p=Percentiles("duration_ms"))
        .order_by()
    )
    out: dict[tuple[str, str], tuple[float, float, float]] = {}
    for latency in latencies:
        if latency["p"]:
            p50, p95, p99 = latency["p"]
            out[(latency["provider"], latency["model"])] = (p50, p95, p99)
    return out


# --- Event lists and traces ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventFilters:
    window: TimeWindow | None = None
    customer_reference_id: str | None = None
    feature_key: str | None = None
    model: str | None = None
    provider: str | None = None
    trace_id: str | None = None
    event_name: str | None = None
    cost_source: str | None = None
    # The dashboard's search boxes: text found anywhere in the customer's reference,
    # email or name / the feature's key or name, any case ("wayne" finds "cus_wayne").
    customer_search: str | None = None
    feature_search: str | None = None


COST_SOURCES = tuple(CostSource.values)
# A search names at most this many customers or features (the most recently created):
# the events scan then walks their (environment, customer|feature, occurred_at) index.
SEARCH_MATCH_LIMIT = 200


def _customer_ids_matching(environment: Environment, text: str) -> list[Any]:
    """Ids of the customers whose reference, email or name contains ``text`` (any case);
    an exact reference first, so the one customer it names is never crowded out."""
    customers = scoped(Customer, environment)
    exact = list(customers.filter(reference_id=text).values_list("id", flat=True)[:1])
    words = Q(reference_id__icontains=text) | Q(email__icontains=text)
    for word in text.split():
        words |= Q(first_name__icontains=word) | Q(last_name__icontains=word)
    found = customers.filter(words).order_by("-created_at").values_list("id", flat=True)
    return exact + [pk for pk in found[:SEARCH_MATCH_LIMIT] if pk not in exact]


def _feature_ids_matching(environment: Environment, text: str) -> list[Any]:
    features = scoped(Feature, environment)
    exact = list(features.filter(key=text).values_list("id", flat=True)[:1])
    found = (
        features.filter(Q(key__icontains=text) | Q(name__icontains=text))
        .order_by("-created_at")
        .values_list("id", flat=True)
    )
    return exact + [pk for pk in found[:SEARCH_MATCH_LIMIT] if pk not in exact]


def events_matching(environment: Environment, filters: EventFilters) -> QuerySet[Event]:
    """The environment's events that pass ``filters`` (unordered).

    Customer and feature are resolved to ids first (one small lookup each), so
    the event scan can use the ``(environment, customer|feature, occurred_at)``
    indexes; an unknown reference matches nothing.
    """
    events = scoped(Event, environment)
    if filters.customer_reference_id is not None:
        customer_id = (
            scoped(Customer, environment)
            .filter(reference_id=filters.customer_reference_id)
            .values_list("id", flat=True)
            .first()
        )
        if customer_id is None:
            return events.none()
        events = events.filter(customer_id=customer_id)
    if filters.feature_key is not None:
        feature_id = (
            scoped(Feature, environment)
            .filter(key=filters.feature_key)
            .values_list("id", flat=True)
            .first()
        )
        if feature_id is None:
            return events.none()
        events = events.filter(feature_id=feature_id)
    if filters.customer_search:
        customer_ids = _customer_ids_matching(environment, filters.customer_search)
        if not customer_ids:
            return events.none()
        events = events.filter(customer_id__in=customer_ids)
    if filters.feature_search:
        feature_ids = _feature_ids_matching(environment, filters.feature_search)
        if not feature_ids:
            return events.none()
        events = events.filter(feature_id__in=feature_ids)
    if filters.window is not None:
        events = events.filter(
            occurred_at__gte=filters.window.start, occurred_at__lt=filters.window.end
        )
    if filters.model is not None:
        events = events.filter(model=filters.model)
    if filters.provider is not None:
        events = events.filter(provider=filters.provider)
    if filters.trace_id is not None:
        events = events.filter(trace_id=filters.trace_id)
    if filters.event_name is not None:
        events = events.filter(event_name=filters.event_name)
    if filters.cost_source is not None:
        events = events.filter(cost_source=filters.cost_source)
    return events


@dataclass(slots=True)
class EventNames:
    """Reference ids and feature keys of a set of events (events carry only ids)."""

    customers: dict[uuid.UUID, str]
    features: dict[uuid.UUID, str]

    def customer(self, event: Event) -> str:
        return self.customers.get(event.customer_id, "")

    def feature(self, event: Event) -> str:
        return self.features.get(event.feature_id, "")


def event_names(environment: Environment, events: list[Event]) -> EventNames:
    """Two queries, whatever the number of events."""
    customer_ids = {event.customer_id for event in events}
    feature_ids = {event.feature_id for event in events}
    return EventNames(
        customers=dict(
            scoped(Customer, environment)
            .filter(id__in=customer_ids)
            .values_list("id", "reference_id")
        )
        if customer_ids
        else {},
        features=dict(
            scoped(Feature, environment).filter(id__in=feature_ids).values_list("id", "key")
        )
        if feature_ids
        else {},
    )


def newest_first(
    events: QuerySet[Event], *, before: tuple[dt.datetime, int] | None, limit: int
) -> list[Event]:
    """Up to ``limit`` events ordered by (occurred_at, id) descending, after a keyset cursor."""
    events = events.order_by("-occurred_at", "-id")
    if before is not None:
        at, pk = before
        # The plain bound lets the (environment, occurred_at, id) index start the scan at
        # the cursor (and prunes newer partitions); the OR alone would be a filter that
        # reads every newer row first.
        events = events.filter(
            Q(occurred_at__lt=at) | Q(occurred_at=at, id__lt=pk), occurred_at__lte=at
        )
    return list(events[:limit])


def events_batches(
    environment: Environment, filters: EventFilters, *, batch_size: int = 1000
) -> Iterator[tuple[list[Event], EventNames]]:
    """Every matching event, newest first, in keyset batches (constant memory for exports)."""
    events = events_matching(environment, filters)
    before: tuple[dt.datetime, int] | None = None
    while True:
        batch = newest_first(events, before=before, limit=batch_size)
        if not batch:
            return
        yield batch, event_names(environment, batch)
        if len(batch) < batch_size:
            return
        before = (batch[-1].occurred_at, batch[-1].id)


@dataclass(slots=True)
class Trace:
    trace_id: str
    events: list[Event]
    names: EventNames
    event_count: int
    cost: Decimal
    revenue: Decimal
    unpriced: int
    started_at: dt.datetime
    ended_at: dt.datetime
    duration_ms_sum: int

    @property
    def margin(self) -> Decimal:
        return self.revenue - self.cost

    @property
    def span_ms(self) -> int:
        return int((self.ended_at - self.started_at) / dt.timedelta(milliseconds=1))

    @property
    def truncated(self) -> bool:
        return self.event_count > len(self.events)


def trace_get(environment: Environment, trace_id: str) -> Trace:
    """A trace's events in time order with totals over all of them; 404 when it has none.

    ``occurredAt`` is taken as an event's start and ``occurredAt + durationMs`` as
    its end, so the span runs from the first start to the last end.
    """
    if not trace_id or len(trace_id) > 255 or "\x00" in trace_id:
        raise NotFound("No such trace.")
    events = scoped(Event, environment).filter(trace_id=trace_id)
    head = events.aggregate(
        count=Count("id"),
        cost=_dec_sum("cost_usd"),
        revenue=_dec_sum("revenue_usd"),
        unpriced=Count("id", filter=Q(cost_usd__isnull=True)),
        started=Min("occurred_at"),
        ended=Max(
            RawSQL("occurred_at + COALESCE(duration_ms, 0) * interval '1 millisecond'", []),
            output_field=DateTimeField(),
        ),
        duration=_int_sum("duration_ms"),
    )
    if not head["count"]:
        raise NotFound("No such trace.")
    listed = list(events.order_by("occurred_at", "id")[:TRACE_MAX_EVENTS])
    return Trace(
        trace_id=trace_id,
        events=listed,
        names=event_names(environment, listed),
        event_count=head["count"],
        cost=head["cost"],
        revenue=head["revenue"],
        unpriced=head["unpriced"],
        started_at=head["started"],
        ended_at=head["ended"],
        duration_ms_sum=head["duration"],
    )


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


def latest_customer_by_meta(
    environment: Environment, key: str, *, since: dt.datetime
) -> dict[str, uuid.UUID]:
    """Each non-empty value of ``meta[key]`` on the environment's events since ``since`` ->
    the customer of the latest such event: one scan of that time range."""
    if not key.isidentifier():
        raise ValueError(f"not a meta key: {key!r}")
    # The key is written into the text (an identifier, checked above) so that DISTINCT ON
    # and ORDER BY are one expression, whatever the parameter binding.
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT DISTINCT ON (meta->>'{key}') meta->>'{key}', customer_id
              FROM events_event
             WHERE environment_id = %s AND occurred_at >= %s AND meta ? '{key}'
             ORDER BY meta->>'{key}', occurred_at DESC
            """,  # noqa: S608 - key checked above
            [environment.pk, since],
        )
        return {value: customer_id for value, customer_id in cursor.fetchall() if value}


# --- Flags stamped at ingestion ---------------------------------------------------------------

# Events whose credits fell short: stamped with a hard-limit pool's shortfall or with a
# credit error (no credit model for the rule's denomination). Grouped by what the one rule
# of uncovered units (``apps.credits.coverage.uncovered_units``) needs: the event's units
# and its credit flags (equal events collapse into one row with their count).
_CREDIT_FLAGS = flags.sql_subset(
    (flags.CREDIT_ERROR, flags.CREDIT_DEDUCTED, flags.CREDIT_SHORTFALL), "e"
)
_CREDIT_FLAGGED = f"""
SELECT w.idx, e.feature_id, e.usage_units, {_CREDIT_FLAGS}::text AS flags, count(*)
FROM unnest(%s::int[], %s::uuid[], %s::timestamptz[], %s::timestamptz[])
     AS w(idx, customer_id, lo, hi)
JOIN events_event e
  ON e.environment_id = %s AND e.customer_id = w.customer_id
 AND e.occurred_at >= w.lo AND e.occurred_at < w.hi AND e.feature_id = ANY(%s)
 AND ({flags.sql_has(flags.CREDIT_SHORTFALL, "e")} OR {flags.sql_has(flags.CREDIT_ERROR, "e")})
GROUP BY 1, 2, 3, 4
"""  # noqa: S608 - the flag expressions are ours


@dataclass(frozen=True, slots=True)
class CreditFlagged:
    """``count`` events of one window and feature with these units and credit flags."""

    window_key: Any
    feature_id: uuid.UUID
    units: Decimal
    flags: flags.EventFlags
    count: int


def credit_flagged_events(
    environment_id: Any, windows: Sequence[CustomerWindow], feature_ids: Iterable[Any]
) -> list[CreditFlagged]:
    """The events of ``feature_ids`` in each customer window whose credits fell short, read
    from their flags (the rollups do not say which units credits paid): only the windows'
    customers' events of these features, through the events' (environment, customer,
    time) index. One statement per chunk of windows."""
    features = list({uuid.UUID(str(f)) for f in feature_ids})
    rows = [
        (index, window.customer_id, window.start, window.end)
        for index, window in enumerate(windows)
        if window.end > window.start
    ]
    out: list[CreditFlagged] = []
    if not features or not rows:
        return out
    for offset in range(0, len(rows), _CHUNK):
        chunk = rows[offset : offset + _CHUNK]
        columns = [list(column) for column in zip(*chunk, strict=True)]
        with connection.cursor() as cursor:
            cursor.execute(_CREDIT_FLAGGED, [*columns, environment_id, features])
            found = cursor.fetchall()
        out.extend(
            CreditFlagged(
                windows[index].key,
                feature_id,
                units,
                flags.EventFlags.from_json(json.loads(stamped)),
                count,
            )
            for index, feature_id, units, stamped, count in found
        )
    return out


_CHUNK = 2000

_OVERAGE = (
    f"SELECT %s, sum({flags.sql_decimal(flags.OVERAGE_UNITS)}) FROM events_event"  # noqa: S608
    " WHERE environment_id = %s AND customer_id = %s AND feature_id = %s"
    f" AND occurred_at >= %s AND occurred_at < %s AND {flags.sql_has(flags.OVERAGE_UNITS)}"
)


def overage_part(
    environment_id: Any,
    *,
    customer_id: uuid.UUID,
    feature_id: uuid.UUID,
    start: dt.datetime,
    end: dt.datetime,
) -> tuple[str, list[Any]]:
    """``SELECT %s, sum(overage units)`` of the customer's events of the feature in
    ``[start, end)``: the units ingestion stamped as beyond a usage cap. The leading
    ``%s`` is the caller's label (its parameter not included), as in
    :func:`apps.events.usage.units_parts`, to union with the caller's own statement."""
    return _OVERAGE, [environment_id, customer_id, feature_id, start, end]
