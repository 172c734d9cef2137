"""The window's ledger, read once for every kind of advice: per customer x feature and per
feature x model sums (:mod:`apps.events.usage`), revenue beside the events' (invoices,
imported subscriptions: :func:`apps.analytics.revenue_sources.extra_revenue`), and the
names of the customers and features they mention."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING

from apps.analytics.revenue_sources import ExtraRevenue, extra_revenue
from apps.core.tenancy import scoped
from apps.customers.models import Customer
from apps.events import usage as ledger
from apps.events.usage import Grain, Measures
from apps.features.models import Feature

from .common import EXACT_DIGITS, ZERO, AdviceWindow

if TYPE_CHECKING:
    from apps.accounts.models import Environment


@dataclass(slots=True)
class Sums:
    """Cost, revenue (USD, exact) and counts of one group of the window."""

    events: int = 0
    cost: Decimal = ZERO
    revenue: Decimal = ZERO  # the events' and the revenue beside them (invoices, imports)
    unpriced: int = 0
    event_revenue: Decimal = ZERO  # the events' own (explicit or plan-rule priced)
    units: Decimal = ZERO  # usage units

    def add(self, measures: Measures) -> None:
        with localcontext(prec=EXACT_DIGITS):
            self.events += measures.event_count
            self.cost += measures.cost_usd
            self.revenue += measures.revenue_usd
            self.unpriced += measures.unpriced_count
            self.event_revenue += measures.revenue_usd
            self.units += measures.usage_units

    def add_revenue(self, amount: Decimal) -> None:
        with localcontext(prec=EXACT_DIGITS):
            self.revenue += amount


@dataclass(slots=True)
class WindowLedger:
    """What the advice reads of one window (two ledger reads, one revenue read)."""

    customers: dict[uuid.UUID, Sums] = field(default_factory=dict)
    features: dict[uuid.UUID, Sums] = field(default_factory=dict)
    # (customer, feature) -> sums: the top contributors of both.
    pairs: dict[tuple[uuid.UUID, uuid.UUID], Sums] = field(default_factory=dict)
    # (feature, model, provider) -> every measure (tokens included): the model advice.
    models: dict[tuple[uuid.UUID, str, str], Measures] = field(default_factory=dict)
    customer_refs: dict[uuid.UUID, str] = field(default_factory=dict)
    feature_keys: dict[uuid.UUID, str] = field(default_factory=dict)
    total: Sums = field(default_factory=Sums)


def read_window(environment: Environment, window: AdviceWindow) -> WindowLedger:
    out = WindowLedger()
    for row in ledger.usage(
        environment,
        start=window.start,
        end=window.end,
        group_by=(Grain.CUSTOMER, Grain.FEATURE),
    ):
        customer, feature = row.key.customer_id, row.key.feature_id
        assert customer is not None and feature is not None
        out.customers.setdefault(customer, Sums()).add(row.measures)
        out.features.setdefault(feature, Sums()).add(row.measures)
        out.pairs.setdefault((customer, feature), Sums()).add(row.measures)
        out.total.add(row.measures)
    for row in ledger.usage(
        environment,
        start=window.start,
        end=window.end,
        group_by=(Grain.FEATURE, Grain.MODEL),
    ):
        assert row.key.feature_id is not None
        out.models[(row.key.feature_id, row.key.model or "", row.key.provider or "")] = row.measures
    _add_extra(out, extra_revenue(environment, window.start, window.end))
    _names(environment, out)
    return out


def _add_extra(out: WindowLedger, extra: ExtraRevenue) -> None:
    """Revenue the events do not carry: each customer's whole amount, each feature's
    attributed part (a base fee over no usage stays on the customer only)."""
    for customer, amount in extra.customers.items():
        out.customers.setdefault(customer, Sums()).add_revenue(amount)
        out.total.add_revenue(amount)
    for (customer, feature), amount in extra.by_customer_feature().items():
        out.features.setdefault(feature, Sums()).add_revenue(amount)
        out.pairs.setdefault((customer, feature), Sums()).add_revenue(amount)


def _names(environment: Environment, out: WindowLedger) -> None:
    out.customer_refs = dict(
        scoped(Customer, environment)
        .filter(id__in=list(out.customers))
        .values_list("id", "reference_id")
    )
    feature_ids = {key[0] for key in out.models} | set(out.features)
    out.feature_keys = dict(
        scoped(Feature, environment).filter(id__in=list(feature_ids)).values_list("id", "key")
    )
