"""What each rule observes: its metric per subject over its window, read from the ledger's
read API (``apps.events.usage``: rollups plus the raw edges of a window, never a scan of a
whole window's events). Decimal only.

* Rolling windows end now; calendar windows start at the UTC day or month; a key budget
  rule reads each key's own budget window (``apps.apikeys.services.budget_window``).
* Cost spike: the window's cost against the median of the same-length windows over the
  previous 28 days (windows aligned to the next whole hour, so the history is one
  hour-grained read). Only prior windows with events count, at least
  ``rule.spike_min_windows`` of them; below ``rule.spike_floor_usd`` nothing fires. The
  observed value is the ratio (compared with the threshold ``k``); the payload carries
  the cost and the baseline.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
import uuid
from collections import defaultdict
from decimal import Decimal, localcontext

from apps.apikeys.models import ApiKey
from apps.apikeys.services import budget_window
from apps.core.tenancy import scoped
from apps.events.usage import Grain, Measures, UsageFilter, UsageKey, hour_ceil, usage

from .models import AlertRule, Metric, Scope, Window

ZERO = Decimal(0)
HISTORY = dt.timedelta(days=28)
# Arithmetic on sums of numeric(38, 12): enough digits to stay exact.
DIGITS = 80

GRAINS: dict[str, tuple[Grain, ...]] = {
    Scope.ENVIRONMENT: (),
    Scope.CUSTOMER: (Grain.CUSTOMER,),
    Scope.FEATURE: (Grain.FEATURE,),
    Scope.MODEL: (Grain.MODEL,),
    Scope.API_KEY: (Grain.API_KEY,),
    Scope.CUSTOMER_FEATURE: (Grain.CUSTOMER, Grain.FEATURE),
}

ROLLING: dict[str, dt.timedelta] = {
    Window.HOUR: dt.timedelta(hours=1),
    Window.DAY: dt.timedelta(days=1),
    Window.WEEK: dt.timedelta(days=7),
    Window.MONTH: dt.timedelta(days=30),
    Window.CALENDAR_DAY: dt.timedelta(days=1),
    Window.CALENDAR_MONTH: dt.timedelta(days=30),
    Window.BUDGET_PERIOD: dt.timedelta(days=1),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Observation:
    """One subject's value of a rule's metric (None: not defined, e.g. margin % of no
    revenue), with the window's sums (the money at stake) and, for spikes, the baseline."""

    subject: str
    key: UsageKey
    value: Decimal | None
    measures: Measures
    start: dt.datetime
    end: dt.datetime
    baseline: Decimal | None = None


def subject_of(key: UsageKey) -> str:
    """A stable text key of a subject: ``customer=<id>;feature=<id>``; ``*`` for the
    whole environment."""
    parts = [
        f"{name}={value}"
        for name, value in (
            ("customer", key.customer_id),
            ("feature", key.feature_id),
            ("model", key.model),
            ("provider", key.provider),
            ("api_key", key.api_key_id),
        )
        if value is not None
    ]
    return ";".join(parts) or "*"


def key_of(subject: str) -> UsageKey:
    """The inverse of :func:`subject_of`."""
    if subject == "*":
        return UsageKey()
    values = dict(part.split("=", 1) for part in subject.split(";"))

    def uid(name: str) -> uuid.UUID | None:
        return uuid.UUID(values[name]) if name in values else None

    return UsageKey(
        customer_id=uid("customer"),
        feature_id=uid("feature"),
        model=values.get("model"),
        provider=values.get("provider"),
        api_key_id=uid("api_key"),
    )


def window_bounds(window: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    now = now.astimezone(dt.UTC)
    if window == Window.CALENDAR_DAY:
        return now.replace(hour=0, minute=0, second=0, microsecond=0), now
    if window == Window.CALENDAR_MONTH:
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), now
    return now - ROLLING[window], now


def rule_filter(rule: AlertRule) -> UsageFilter:
    return UsageFilter(
        customer_ids=[rule.customer_id] if rule.customer_id else None,
        feature_ids=[rule.feature_id] if rule.feature_id else None,
        models=[rule.model] if rule.model else None,
        api_key_ids=[rule.api_key_id] if rule.api_key_id else None,
    )


def metric_value(metric: str, measures: Measures) -> Decimal | None:
    with localcontext(prec=DIGITS):
        if metric == Metric.COST:
            return measures.cost_usd
        if metric == Metric.REVENUE:
            return measures.revenue_usd
        if metric == Metric.MARGIN_AMOUNT:
            return measures.margin_usd
        if metric == Metric.MARGIN_PERCENT:
            if measures.revenue_usd == 0:
                return None
            return (measures.margin_usd * 100 / measures.revenue_usd).quantize(Decimal("1e-6"))
        if metric == Metric.USAGE_UNITS:
            return measures.usage_units
        if metric == Metric.UNPRICED_EVENTS:
            return Decimal(measures.unpriced_count)
    raise ValueError(f"{metric} is not a windowed metric")


def observe(rule: AlertRule, now: dt.datetime) -> list[Observation]:
    """Every subject of the rule that has events in its window, with its value."""
    if rule.metric == Metric.KEY_BUDGET_PERCENT:
        return observe_budgets(rule, now)
    if rule.metric == Metric.COST_SPIKE:
        return observe_spike(rule, now)
    start, end = window_bounds(rule.window, now)
    rows = usage(
        rule.environment,
        start=start,
        end=end,
        group_by=GRAINS[rule.scope],
        filters=rule_filter(rule),
    )
    return [
        Observation(
            subject_of(row.key),
            row.key,
            metric_value(rule.metric, row.measures),
            row.measures,
            start,
            end,
        )
        for row in rows
    ]


def budgeted_keys(rule: AlertRule, api_key_ids: list[uuid.UUID] | None = None) -> list[ApiKey]:
    keys = scoped(ApiKey, rule.environment_id).filter(budget_cents__gt=0, revoked_at__isnull=True)
    if rule.api_key_id:
        keys = keys.filter(pk=rule.api_key_id)
    if api_key_ids is not None:
        keys = keys.filter(pk__in=api_key_ids)
    return list(keys.only("id", "budget_cents", "budget_period"))


def observe_budgets(
    rule: AlertRule, now: dt.datetime, api_key_ids: list[uuid.UUID] | None = None
) -> list[Observation]:
    """Each budgeted key's spend (its events' cost in its budget window) in percent of
    its budget. One read per budget period in use."""
    by_period: dict[str | None, list[ApiKey]] = defaultdict(list)
    for key in budgeted_keys(rule, api_key_ids):
        by_period[key.budget_period].append(key)
    out: list[Observation] = []
    for period, keys in by_period.items():
        start, resets = budget_window(period, now)
        end = resets or now + dt.timedelta(days=1)
        rows = usage(
            rule.environment,
            start=start,
            end=end,
            group_by=(Grain.API_KEY,),
            filters=UsageFilter(api_key_ids=[key.pk for key in keys]),
        )
        spent = {row.key.api_key_id: row.measures for row in rows}
        for key in keys:
            measures = spent.get(key.pk, Measures())
            with localcontext(prec=DIGITS):
                percent = (measures.cost_usd * 10000 / (key.budget_cents or 1)).quantize(
                    Decimal("1e-6")
                )
            usage_key = UsageKey(api_key_id=key.pk)
            out.append(Observation(subject_of(usage_key), usage_key, percent, measures, start, end))
    return out


def observe_spike(rule: AlertRule, now: dt.datetime) -> list[Observation]:
    length = ROLLING[rule.window]
    end = hour_ceil(now)
    start = end - length
    grains = GRAINS[rule.scope]
    filters = rule_filter(rule)
    current = usage(rule.environment, start=start, end=end, group_by=grains, filters=filters)
    history = usage(
        rule.environment,
        start=start - HISTORY,
        end=start,
        group_by=(*grains, Grain.HOUR),
        filters=filters,
    )
    windows: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in history:
        assert row.key.hour is not None
        # Window i (0 = the one just before ``start``) covers [start-(i+1)L, start-iL).
        index = (start - row.key.hour - dt.timedelta(microseconds=1)) // length
        subject = subject_of(dataclasses.replace(row.key, hour=None))
        if row.measures.event_count:
            windows[subject][index] += row.measures.cost_usd
    out = []
    for row in current:
        subject = subject_of(row.key)
        prior = list(windows.get(subject, {}).values())
        baseline = statistics.median(prior) if prior else None
        cost = row.measures.cost_usd
        enough = len(prior) >= rule.spike_min_windows and baseline is not None and baseline > 0
        ratio = ZERO
        if enough and cost >= rule.spike_floor_usd:
            assert baseline is not None
            with localcontext(prec=DIGITS):
                ratio = (cost / baseline).quantize(Decimal("1e-6"))
        out.append(Observation(subject, row.key, ratio, row.measures, start, end, baseline))
    return out
