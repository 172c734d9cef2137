"""Billing test helpers: plans, subscriptions at a chosen instant, and usage events stored
through the real ingestion path (so the hourly rollups hold them)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from apps.accounts.models import Environment
from apps.billing.models import Invoice
from apps.customers.models import Customer
from apps.events.ingest import events_ingest
from apps.plans.models import Plan
from apps.plans.pricing import PricingModel, Rule, Tier
from apps.plans.services import RuleSpec
from apps.pricing.models import PriceVersion
from apps.pricing.services import catalog_sync
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_create
from tests.events.conftest import CATALOG
from tests.plans.helpers import SYSTEM, make_plan

D = Decimal
_keys = itertools.count()


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def per_unit(price: str, **kwargs: Any) -> RuleSpec:
    return RuleSpec(rule=Rule(model=PricingModel.PER_UNIT, unit_price=D(price), **kwargs))


def tiers(*spec: tuple[str | None, str] | tuple[str | None, str, str]) -> tuple[Tier, ...]:
    return tuple(
        Tier(
            up_to=None if t[0] is None else D(t[0]),
            unit_price=D(t[1]),
            flat_fee=D(t[2]) if len(t) > 2 else D(0),  # type: ignore[misc]
        )
        for t in spec
    )


def plan(
    environment: Environment,
    key: str = "pro",
    *,
    price: str | int = 0,
    timing: str = Plan.BillingTiming.IN_ARREARS,
    features: dict[str, RuleSpec] | None = None,
    interval_months: int = 1,
) -> Plan:
    return make_plan(
        environment,
        key,
        price=price,
        billing_timing=timing,
        features=features if features is not None else {"tokens": per_unit("0.002")},
        interval_months=interval_months,
    )


def customer(environment: Environment, reference: str = "cus_1") -> Customer:
    return Customer.objects.get_or_create(environment=environment, reference_id=reference)[0]


def subscribe(
    environment: Environment,
    the_plan: Plan,
    *,
    at: dt.datetime,
    reference: str = "cus_1",
    **kwargs: Any,
) -> Subscription:
    return subscription_create(
        environment=environment,
        customer=customer(environment, reference),
        plan=the_plan,
        now=at,
        actor=SYSTEM,
        **kwargs,
    )


def _small_catalog() -> None:
    """Ingestion prices events from the model catalog and loads the full one on first use
    in an empty database (seconds per test); a one-model catalog is enough here."""
    if PriceVersion.objects.exists():
        return
    path = Path(tempfile.gettempdir()) / f"tanso-billing-prices-{os.getpid()}.json"
    if not path.exists():
        path.write_text(json.dumps(CATALOG[:1]))
    catalog_sync(source=str(path))


def usage(
    environment: Environment,
    *events: tuple[dt.datetime, str | int | Decimal],
    feature: str = "tokens",
    reference: str = "cus_1",
    cost: str = "0.001",
) -> None:
    """Store events of ``feature`` for ``reference``: (occurredAt, usageUnits) each, each
    costing ``cost`` (USD)."""
    items = [
        {
            "eventIdempotencyKey": f"ev-{next(_keys)}",
            "eventName": "call",
            "customerReferenceId": reference,
            "featureKey": feature,
            "usageUnits": str(units),
            "costAmount": cost,
            "occurredAt": at.isoformat(),
        }
        for at, units in events
    ]
    _small_catalog()
    result = events_ingest(environment=environment, items=items, api_key_id=None)
    assert result.accepted == len(items), result.errors


def invoices_of(subscription: Subscription) -> list[Invoice]:
    return list(
        Invoice.objects.filter(subscription=subscription)
        .prefetch_related("lines")
        .order_by("sequence")
    )


def lines(invoice: Invoice) -> list[tuple[str, int]]:
    return [(line.kind, line.amount_minor) for line in invoice.lines.order_by("position")]
