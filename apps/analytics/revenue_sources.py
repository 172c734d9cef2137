"""Revenue that events do not carry, attributed to customers, features and models.

Observe margins count the events' ``revenueAmount`` (and plan-rule revenue), and
:func:`extra_revenue` adds the rest, for every read (docs/revenue.md): invoice
revenue recognised day by day in the ledger (``events_recognisedrevenue``, read
and attributed by :mod:`.recognised`), and registered sources -- revenue that lives
in apps *above* the read models (STYLE.md layers: subscriptions imported read-only
from Stripe, ``apps.stripe_import``) registers a source from their
``AppConfig.ready``; analytics never imports them.

A source returns an :class:`ExtraRevenue` for a window: USD amounts at 12 places,
per customer, the part of each customer's amount attributed to a
``(feature, model, provider)`` slice (the rest could not be attributed: no usage),
and per UTC day. The parts add up exactly: the slices of a customer never exceed
its amount, and the days add up to the total. Sources answer without a query
beyond their own check when they have nothing, so an environment that uses none
pays one cheap query per read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apps.accounts.models import Environment

ZERO = Decimal(0)
# A slice: the customer, feature, model and provider it is attributed to.
SliceKey = tuple[uuid.UUID, uuid.UUID, str, str]


@dataclasses.dataclass(slots=True)
class ExtraRevenue:
    """Revenue of one window beside the events' (USD, 12 places)."""

    customers: dict[uuid.UUID, Decimal] = dataclasses.field(default_factory=dict)
    slices: dict[SliceKey, Decimal] = dataclasses.field(default_factory=dict)
    days: dict[dt.date, Decimal] = dataclasses.field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.customers)

    @property
    def total(self) -> Decimal:
        with localcontext(prec=80):
            return sum(self.customers.values(), ZERO)

    def add(self, other: ExtraRevenue) -> None:
        with localcontext(prec=80):
            for customer, amount in other.customers.items():
                self.customers[customer] = self.customers.get(customer, ZERO) + amount
            for key, amount in other.slices.items():
                self.slices[key] = self.slices.get(key, ZERO) + amount
            for day, amount in other.days.items():
                self.days[day] = self.days.get(day, ZERO) + amount

    def by_feature(self) -> dict[uuid.UUID, Decimal]:
        out: dict[uuid.UUID, Decimal] = {}
        with localcontext(prec=80):
            for (_customer, feature, _model, _provider), amount in self.slices.items():
                out[feature] = out.get(feature, ZERO) + amount
        return out

    def by_model(self) -> dict[tuple[str, str], Decimal]:
        """``(provider, model) -> amount`` (slices of events that named no model included
        under model ``""``)."""
        out: dict[tuple[str, str], Decimal] = {}
        with localcontext(prec=80):
            for (_customer, _feature, model, provider), amount in self.slices.items():
                out[(provider, model)] = out.get((provider, model), ZERO) + amount
        return out

    def by_feature_model(
        self, customer_id: uuid.UUID | None = None
    ) -> dict[tuple[uuid.UUID, str, str], Decimal]:
        """``(feature_id, model, provider) -> amount``, of one customer or of all."""
        out: dict[tuple[uuid.UUID, str, str], Decimal] = {}
        with localcontext(prec=80):
            for (customer, feature, model, provider), amount in self.slices.items():
                if customer_id is None or customer == customer_id:
                    key = (feature, model, provider)
                    out[key] = out.get(key, ZERO) + amount
        return out

    def by_customer_feature(self) -> dict[tuple[uuid.UUID, uuid.UUID], Decimal]:
        out: dict[tuple[uuid.UUID, uuid.UUID], Decimal] = {}
        with localcontext(prec=80):
            for (customer, feature, _model, _provider), amount in self.slices.items():
                out[(customer, feature)] = out.get((customer, feature), ZERO) + amount
        return out


# (environment, start, end) -> the revenue of [start, end); start and end are on the hour.
RevenueSource = Callable[["Environment", dt.datetime, dt.datetime], ExtraRevenue]

_sources: dict[str, RevenueSource] = {}


def register_revenue_source(name: str, source: RevenueSource) -> None:
    """Add (or replace, by name: ``ready()`` may run twice in tests) a source."""
    _sources[name] = source


def extra_revenue(environment: Environment, start: dt.datetime, end: dt.datetime) -> ExtraRevenue:
    """The ledger's recognised revenue (invoices: :mod:`.recognised`) and every registered
    source's revenue for ``[start, end)``, added up."""
    from .recognised import recognised_extra  # recognised imports this module

    total = ExtraRevenue()
    total.add(recognised_extra(environment, start, end))
    for source in _sources.values():
        total.add(source(environment, start, end))
    return total
