"""Reads of the ledger. Aggregates come from the hourly rollups, never raw events.

Windows are ``[start, end)`` on the rollups' hour buckets: ``start`` is
floored to its hour and ``end`` rounded up to the next hour, so a window
always covers whole hours (the rollup grain). Amounts are USD ``Decimal``;
``cost_usd`` sums the priced events only and ``unpriced_count`` says how many
events the cost leaves out (cost is never a silent zero). ``margin_usd`` is
``revenue_usd - cost_usd``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypedDict

from django.db.models import Count, Max, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDay

from apps.core.tenancy import get_scoped_or_404, scoped

from .models import Event, EventKey, HourlyRollup

if TYPE_CHECKING:
    from apps.accounts.models import Environment

_ZERO = Decimal(0)

# Column -> aggregate of the rollups; the same sums every breakdown returns.
_SUMS = {
    "event_count": Sum("event_count"),
    "usage_units": Sum("usage_units"),
    "input_tokens": Sum("input_tokens"),
    "output_tokens": Sum("output_tokens"),
    "cache_read_tokens": Sum("cache_read_tokens"),
    "cache_write_tokens": Sum("cache_write_tokens"),
    "reasoning_tokens": Sum("reasoning_tokens"),
    "cost_usd": Sum("cost_usd"),
    "revenue_usd": Sum("revenue_usd"),
    "unpriced_count": Sum("unpriced_count"),
    "revenue_count": Sum("revenue_count"),
    "duration_ms_sum": Sum("duration_ms_sum"),
    "duration_count": Sum("duration_count"),
}


def _hour_floor(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _hour_ceil(at: dt.datetime) -> dt.datetime:
    floor = _hour_floor(at)
    return floor if floor == at else floor + dt.timedelta(hours=1)


def rollups_in_window(
    environment: Environment, *, start: dt.datetime, end: dt.datetime
) -> QuerySet[HourlyRollup]:
    """The environment's rollup rows of the whole hours covering ``[start, end)``."""
    return scoped(HourlyRollup, environment).filter(
        bucket_start__gte=_hour_floor(start), bucket_start__lt=_hour_ceil(end)
    )


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    """Fill empty sums with zeros and add the margin."""
    for name in _SUMS:
        if row.get(name) is None:
            row[name] = _ZERO if name in {"usage_units", "cost_usd", "revenue_usd"} else 0
    row["margin_usd"] = row["revenue_usd"] - row["cost_usd"]
    return row


@dataclass(frozen=True)
class Totals:
    event_count: int
    usage_units: Decimal
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal
    revenue_usd: Decimal
    margin_usd: Decimal
    unpriced_count: int
    revenue_count: int
    duration_ms_sum: int
    duration_count: int
    customer_count: int
    feature_count: int
    model_count: int


def rollup_totals(environment: Environment, *, start: dt.datetime, end: dt.datetime) -> Totals:
    """Everything in the window, plus how many distinct customers, features, models."""
    row = rollups_in_window(environment, start=start, end=end).aggregate(
        **_SUMS,
        customer_count=Count("customer", distinct=True),
        feature_count=Count("feature", distinct=True),
        model_count=Count("model", distinct=True),
    )
    return Totals(**_finish(row))


def _breakdown(
    environment: Environment, fields: list[str], *, start: dt.datetime, end: dt.datetime
) -> list[dict[str, Any]]:
    rows = (
        rollups_in_window(environment, start=start, end=end)
        .values(*fields)
        .annotate(**_SUMS, last_bucket_start=Max("bucket_start"))
        .order_by(*fields)
    )
    return [_finish(row) for row in rows]


def rollup_by_customer(
    environment: Environment, *, start: dt.datetime, end: dt.datetime
) -> list[dict[str, Any]]:
    """Per customer: ``customer_id``, the sums and ``last_bucket_start`` (last seen hour)."""
    return _breakdown(environment, ["customer_id"], start=start, end=end)


def rollup_by_feature(
    environment: Environment, *, start: dt.datetime, end: dt.datetime
) -> list[dict[str, Any]]:
    return _breakdown(environment, ["feature_id"], start=start, end=end)


def rollup_by_model(
    environment: Environment, *, start: dt.datetime, end: dt.datetime
) -> list[dict[str, Any]]:
    """Per (model, provider); ``model`` "" groups events that named no model."""
    return _breakdown(environment, ["model", "provider"], start=start, end=end)


def rollup_by_customer_feature_model(
    environment: Environment,
    *,
    start: dt.datetime,
    end: dt.datetime,
    customer_id: Any = None,
    feature_id: Any = None,
) -> list[dict[str, Any]]:
    """The breakdown one customer's (or one feature's) page needs."""
    fields = ["customer_id", "feature_id", "model", "provider"]
    queryset = rollups_in_window(environment, start=start, end=end)
    if customer_id is not None:
        queryset = queryset.filter(customer_id=customer_id)
    if feature_id is not None:
        queryset = queryset.filter(feature_id=feature_id)
    rows = queryset.values(*fields).annotate(**_SUMS).order_by(*fields)
    return [_finish(row) for row in rows]


def rollup_daily_series(
    environment: Environment, *, start: dt.datetime, end: dt.datetime
) -> list[dict[str, Any]]:
    """One row per UTC day that has events: ``day`` (a date) and the sums."""
    rows = (
        rollups_in_window(environment, start=start, end=end)
        .annotate(day=TruncDay("bucket_start", tzinfo=dt.UTC))
        .values("day")
        .annotate(**_SUMS)
        .order_by("day")
    )
    return [_finish({**row, "day": row["day"].date()}) for row in rows]


def unpriced_count(
    environment: Environment,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> int:
    """How many events of the window (default: all time) have an unknown cost."""
    queryset = scoped(HourlyRollup, environment)
    if start is not None:
        queryset = queryset.filter(bucket_start__gte=_hour_floor(start))
    if end is not None:
        queryset = queryset.filter(bucket_start__lt=_hour_ceil(end))
    return queryset.aggregate(n=Coalesce(Sum("unpriced_count"), 0))["n"]


class UnpricedModel(TypedDict):
    model: str
    provider: str
    unpriced: int


def unpriced_models(
    environment: Environment, *, start: dt.datetime, end: dt.datetime
) -> list[UnpricedModel]:
    """(model, provider, unpriced_count) of the window, most unpriced first."""
    return list(
        rollups_in_window(environment, start=start, end=end)
        .values("model", "provider")
        .annotate(unpriced=Sum("unpriced_count"))
        .filter(unpriced__gt=0)
        .order_by("-unpriced", "model")
    )


# --- Raw events (lists, traces, detail) ------------------------------------------------------


def events_for(environment: Environment) -> QuerySet[Event]:
    """The environment's events; filter on ``occurred_at`` to let partitions be pruned."""
    return scoped(Event, environment)


def event_get(environment: Environment, event_id: Any) -> Event:
    """One event by id (404 when it is another environment's or malformed)."""
    return get_scoped_or_404(Event, environment, pk=event_id)


def event_get_by_key(environment: Environment, idempotency_key: str) -> Event:
    """One event by its idempotency key: the key row names the partition."""
    key = get_scoped_or_404(EventKey, environment, idempotency_key=idempotency_key)
    return get_scoped_or_404(Event, environment, pk=key.event_id, occurred_at=key.occurred_at)


def trace_events(environment: Environment, trace_id: str) -> QuerySet[Event]:
    """A trace's events in order (served by event_env_trace_idx)."""
    return events_for(environment).filter(trace_id=trace_id).order_by("occurred_at", "id")
