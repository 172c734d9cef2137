"""The simulation engine: re-rate real history with the code that bills.

For every subscription of the cohort, the closed billing periods that end inside the
window (``(from, min(to, now)]``) are rebuilt by billing's own timeline
(:class:`apps.billing.periods.Timeline`). Their usage is read in a few statements per
chunk through billing's usage book (totals per feature, per day for windowed caps, units
credits did not cover) and the ledger's read API (per feature x model: units, cost,
tokens). Each period is then priced, once as stored ("before") and once per scenario,
by the functions the billing cycle uses: ``base_in_arrears`` / ``base_in_advance``,
``rules_by_feature``, ``usage_figures`` (caps and their reset windows) and
``usage_lines`` (pricing models, overage, credits applied), each line rounded once by
``to_minor_units``. Nothing is written.

A period's bill is its base fee plus its usage, whichever invoice carries them (in
advance, the base fee is on the invoice at the period's start and the usage on the next).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from apps.billing.lines import (
    LineDraft,
    base_in_advance,
    base_in_arrears,
    pricing_rule_of,
    rules_by_feature,
    usage_lines,
)
from apps.billing.periods import Period, PlanSpan, Timeline
from apps.billing.services.usage_book import _figures, _register_period, _UsageBook, _UsageNeed
from apps.core.money import from_minor_units, to_minor_units
from apps.events import usage as ledger
from apps.events.usage import Grain, Measure
from apps.plans.models import Plan
from apps.subscriptions.models import Subscription

from .catalog import Base, ScenarioCatalog
from .costs import GROUP_MEASURES, Group, group_cost
from .credits import CreditFigures, Daily, draw

ZERO = Decimal(0)
HUNDRED = Decimal(100)
CHUNK = 250  # subscription periods per read (and per progress step)

# progress(done, total) -> False to stop
Progress = Callable[[int, int], bool]


@dataclasses.dataclass(frozen=True)
class SubPeriod:
    subscription: Subscription
    period: Period
    currency: str

    @property
    def key(self) -> tuple[Any, dt.datetime]:
        return (self.subscription.pk, self.period.start)


@dataclasses.dataclass
class Figures:
    """One subscription period priced under one variant (the actual catalog or a scenario)."""

    plan_key: str
    bill: Decimal  # the sum of the lines, each rounded once (major units)
    cost: Decimal  # USD, priced events
    unpriced: int
    credits: CreditFigures
    blocked: Decimal  # units beyond a hard cap: not billed, refused by the check


@dataclasses.dataclass
class PeriodResult:
    sp: SubPeriod
    variants: list[Figures]  # [actual, scenario 1, ...]


def periods_of(timeline: Timeline, start: dt.datetime, until: dt.datetime) -> list[Period]:
    """The subscription's periods that end in ``(start, until]``."""
    out = []
    for period in timeline.periods_from(start):
        if period.end > until:
            break
        if period.end > start:
            out.append(period)
    return out


def _priced_spans(catalog: ScenarioCatalog, period: Period) -> Period:
    spans = tuple(PlanSpan(s.start, s.end, catalog.plan(s.plan)) for s in period.spans)
    return dataclasses.replace(period, spans=spans)


@dataclasses.dataclass
class _Chunk:
    """The reads of one chunk of subscription periods, shared by every variant."""

    book: _UsageBook
    needs: dict[tuple, _UsageNeed]
    groups: dict[tuple, list[Group]]
    daily: dict[tuple, Daily]


def _need(sp: SubPeriod, index: int, catalog: ScenarioCatalog) -> _UsageNeed:
    period = _priced_spans(catalog, sp.period)
    rules = rules_by_feature(period.spans, catalog.rules_of)
    return _UsageNeed((index, *sp.key), sp.subscription, period, rules)


def _read_chunk(base: Base, catalogs: list[ScenarioCatalog], sps: list[SubPeriod]) -> _Chunk:
    book = _UsageBook(base.environment_id)
    needs: dict[tuple, _UsageNeed] = {}
    backed: set[Any] = set()
    for sp in sps:
        for index, catalog in enumerate(catalogs):
            need = _need(sp, index, catalog)
            needs[need.key] = need
            _register_period(book, need)
            backed |= {f for f, (rule, _p) in need.rules.items() if rule.is_credit_backed}
    book.fetch()
    windows = [
        ledger.CustomerWindow(sp.key, sp.subscription.customer_id, sp.period.start, sp.period.end)
        for sp in sps
    ]
    sums = ledger.customer_window_sums(
        base.environment_id, windows, group_by=(Grain.FEATURE, Grain.MODEL), measures=GROUP_MEASURES
    )
    groups = {
        key: [Group(k.feature_id, k.model or "", k.provider or "", v) for k, v in rows.items()]
        for key, rows in sums.items()
    }
    return _Chunk(book, needs, groups, _read_daily(base, windows, backed))


def _read_daily(base: Base, windows: list, features: set[Any]) -> dict[tuple, Daily]:
    out: dict[tuple, Daily] = {}
    if not features:
        return out
    sums = ledger.customer_window_sums(
        base.environment_id,
        windows,
        group_by=(Grain.FEATURE, Grain.MODEL, Grain.DAY),
        feature_ids=features,
    )
    for key, rows in sums.items():
        daily: Daily = out.setdefault(key, {})
        for group, amounts in rows.items():
            assert group.day is not None
            day = daily.setdefault(group.day, {})
            day[(group.feature_id, group.model or "")] = amounts[Measure.USAGE_UNITS]
    return out


def _rounded(lines: list[LineDraft], currency: str) -> Decimal:
    return sum(
        (from_minor_units(to_minor_units(line.amount_exact, currency), currency) for line in lines),
        ZERO,
    )


def _base_lines(sp: SubPeriod, period: Period) -> list[LineDraft]:
    if sp.period.spans[0].plan.billing_timing == Plan.BillingTiming.IN_ADVANCE:
        return [base_in_advance(period.plan_at_start, period.start, period.natural_end)]
    return base_in_arrears(period)


def _usage(
    chunk: _Chunk, need: _UsageNeed, base: Base, credits: CreditFigures | None
) -> tuple[list[LineDraft], Decimal]:
    """The usage lines the cycle would draft (uncovered units from the simulated pool when
    the scenario changes credits), and the units a hard cap blocked."""
    lines: list[LineDraft] = []
    blocked = ZERO
    ordered = sorted(need.rules.items(), key=lambda item: base.features[item[0]].key)
    for feature_id, (rule_row, plan) in ordered:
        figures = _figures(chunk.book, need, feature_id)
        if figures.units == 0:
            continue
        if credits is not None and rule_row.is_credit_backed:
            uncovered = min(credits.uncovered.get(feature_id, ZERO), figures.units)
            figures = dataclasses.replace(figures, uncovered=uncovered)
        if pricing_rule_of(rule_row).is_hard_capped:
            blocked += figures.beyond
        lines.extend(
            usage_lines(
                rule_row,
                base.features[feature_id],
                plan,
                figures,
                start=need.period.start,
                end=need.period.end,
            )
        )
    return lines, blocked


def _discounted(catalog: ScenarioCatalog, bill: Decimal, plan: Plan, currency: str) -> Decimal:
    for percent, plan_key in catalog.discounts:
        if plan_key is None or plan_key == plan.key:
            off = from_minor_units(to_minor_units(bill * percent / HUNDRED, currency), currency)
            bill -= off
    return bill


def _price(
    base: Base,
    chunk: _Chunk,
    sp: SubPeriod,
    index: int,
    catalog: ScenarioCatalog,
    *,
    at: dt.datetime,
) -> Figures:
    need = chunk.needs[(index, *sp.key)]
    period = need.period
    backed = {f: rule for f, (rule, _p) in need.rules.items() if rule.is_credit_backed}
    credits = draw(
        base,
        catalog,
        backed=backed,
        daily=chunk.daily.get(sp.key, {}),
        plan_key=period.plan_at_start.key,
        at=period.start,
    )
    usage, blocked = _usage(chunk, need, base, credits if catalog.changes_credits else None)
    bill = _rounded([*_base_lines(sp, period), *usage], sp.currency)
    bill = _discounted(catalog, bill, period.plan_at_end, sp.currency)
    cost, unpriced = ZERO, 0
    for group in chunk.groups.get(sp.key, []):
        priced = group_cost(catalog, group, environment_id=base.environment_id, at=at)
        cost += priced.cost
        unpriced += priced.unpriced
    return Figures(period.plan_at_end.key, bill, cost, unpriced, credits, blocked)


def rerate(
    base: Base,
    catalogs: list[ScenarioCatalog],
    sps: list[SubPeriod],
    *,
    price_at: dt.datetime,
    progress: Progress | None = None,
) -> list[PeriodResult]:
    """Every subscription period priced as stored (``catalogs[0]``) and under each scenario.
    ``progress(done, total)`` after each chunk; returning False stops the run."""
    out: list[PeriodResult] = []
    for offset in range(0, len(sps), CHUNK):
        part = sps[offset : offset + CHUNK]
        chunk = _read_chunk(base, catalogs, part)
        for sp in part:
            variants = [
                _price(base, chunk, sp, index, catalog, at=price_at)
                for index, catalog in enumerate(catalogs)
            ]
            out.append(PeriodResult(sp, variants))
        if progress is not None and not progress(offset + len(part), len(sps)):
            break
    return out
