"""Pricing a period's usage: the usage ranges a batch needs, read in a few statements
(:class:`_UsageBook`), and the usage lines priced from them."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

from apps.billing.lines import (
    WINDOWED,
    ZERO,
    LineDraft,
    UsageFigures,
    usage_figures,
    usage_lines,
    window_lookback,
)
from apps.billing.periods import Period
from apps.billing.usage import Range, uncovered_by_credits, usage_by_day, usage_totals
from apps.core.tenancy import scoped
from apps.credits.models import CreditPool
from apps.plans.models import Plan, PlanFeatureRule
from apps.subscriptions.models import Subscription

from .timelines import _Catalog


@dataclasses.dataclass
class _UsageNeed:
    """One period's usage to price for one subscription."""

    key: tuple
    subscription: Subscription
    period: Period
    rules: dict[Any, tuple[PlanFeatureRule, Plan]]


class _UsageBook:
    """Collects the usage ranges a batch needs, then reads them in a few statements."""

    def __init__(self, environment_id: Any) -> None:
        self.environment_id = environment_id
        self.ranges: list[Range] = []
        self.daily_ranges: list[Range] = []
        self.daily_features: set[Any] = set()
        self.uncovered_ranges: list[Range] = []
        # Per uncovered range: the credit denominations its credit-backed rules draw on.
        self.uncovered_denominations: list[frozenset[str]] = []
        self.uncovered_features: set[Any] = set()
        self.totals: dict[Any, dict[Any, Decimal]] = {}
        self.daily: dict[Any, dict[Any, dict[dt.datetime, Decimal]]] = {}
        self.uncovered: dict[Any, dict[Any, Decimal]] = {}

    def need(self, key: Any, customer_id: Any, start: dt.datetime, end: dt.datetime) -> None:
        self.ranges.append((key, customer_id, start, end))

    def need_daily(
        self, key: Any, customer_id: Any, start: dt.datetime, end: dt.datetime, features: set
    ) -> None:
        self.daily_ranges.append((key, customer_id, start, end))
        self.daily_features |= features

    def need_uncovered(
        self,
        key: Any,
        customer_id: Any,
        start: dt.datetime,
        end: dt.datetime,
        *,
        features: set,
        denominations: set[str],
    ) -> None:
        self.uncovered_ranges.append((key, customer_id, start, end))
        self.uncovered_denominations.append(frozenset(denominations))
        self.uncovered_features |= features

    def fetch(self) -> None:
        if self.ranges:
            self.totals = usage_totals(self.environment_id, self.ranges)
        if self.daily_ranges:
            self.daily = usage_by_day(self.environment_id, self.daily_ranges, self.daily_features)
        if self.uncovered_ranges:
            self.uncovered = self._fetch_uncovered()
        self.ranges, self.daily_ranges, self.daily_features = [], [], set()
        self.uncovered_ranges, self.uncovered_features = [], set()
        self.uncovered_denominations = []

    def _fetch_uncovered(self) -> dict[Any, dict[Any, Decimal]]:
        """Units credits did not cover: a hard-limit pool's shortfall, or units charged in
        a denomination the customer had no pool for (no credit model: nothing was
        deducted). A soft pool covers everything (it goes negative), so a range whose
        denominations all had a soft pool of its customer from its start costs no read
        of its events (one small query decides)."""
        customers = {customer_id for _key, customer_id, _s, _e in self.uncovered_ranges}
        soft_since = {
            (customer_id, denomination): created_at
            for customer_id, denomination, created_at in scoped(
                CreditPool.objects, self.environment_id
            )
            .filter(customer_id__in=customers, hard_limit=False)
            .values_list("customer_id", "denomination", "created_at")
        }

        def covered(customer_id: Any, start: dt.datetime, denominations: frozenset[str]) -> bool:
            since = [soft_since.get((customer_id, d)) for d in denominations]
            return all(at is not None and at <= start for at in since)

        ranges = [
            r
            for r, denominations in zip(
                self.uncovered_ranges, self.uncovered_denominations, strict=True
            )
            if not covered(r[1], r[2], denominations)
        ]
        return uncovered_by_credits(self.environment_id, ranges, self.uncovered_features)


def _register_period(book: _UsageBook, need: _UsageNeed) -> None:
    """Ask for what pricing ``need.period``'s usage takes: its totals, for capped rules
    the usage before it (a cap that never resets) or per day (daily/weekly/monthly caps),
    and for credit-backed rules the units credits did not cover."""
    subscription, period = need.subscription, need.period
    book.need(need.key, subscription.customer_id, period.start, period.end)
    backed = [rule for rule, _plan in need.rules.values() if rule.is_credit_backed]
    if backed:
        book.need_uncovered(
            ("uncovered", *need.key),
            subscription.customer_id,
            period.start,
            period.end,
            features={rule.feature_id for rule in backed},
            denominations={rule.credit_denomination for rule in backed},
        )
    rules = [rule for rule, _plan in need.rules.values() if rule.max_usage is not None]
    if any(r.reset_interval == PlanFeatureRule.ResetInterval.NEVER for r in rules):
        book.need(
            ("before", *need.key), subscription.customer_id, subscription.started_at, period.start
        )
    windowed = [r for r in rules if r.reset_interval in WINDOWED]
    if windowed:
        lookback = min(window_lookback(r.reset_interval, period.start) for r in windowed)
        book.need_daily(
            ("daily", *need.key),
            subscription.customer_id,
            lookback,
            period.end,
            {r.feature_id for r in windowed},
        )


def _figures(book: _UsageBook, need: _UsageNeed, feature_id: Any) -> UsageFigures:
    rule_row, _plan = need.rules[feature_id]
    units = book.totals.get(need.key, {}).get(feature_id, ZERO)
    before = book.totals.get(("before", *need.key), {}).get(feature_id, ZERO)
    daily = book.daily.get(("daily", *need.key), {}).get(feature_id)
    figures = usage_figures(
        rule_row, units=units, period_start=need.period.start, used_before=before, daily=daily
    )
    uncovered = book.uncovered.get(("uncovered", *need.key), {}).get(feature_id, ZERO)
    if uncovered > 0:
        figures = dataclasses.replace(figures, uncovered=min(uncovered, figures.units))
    return figures


def _usage_drafts(book: _UsageBook, need: _UsageNeed, catalog: _Catalog) -> list[LineDraft]:
    out: list[LineDraft] = []
    for feature_id, (rule_row, plan) in sorted(
        need.rules.items(), key=lambda item: catalog.features[item[0]].key
    ):
        figures = _figures(book, need, feature_id)
        if figures.units == 0:
            continue
        out.extend(
            usage_lines(
                rule_row,
                catalog.features[feature_id],
                plan,
                figures,
                start=need.period.start,
                end=need.period.end,
            )
        )
    return out
