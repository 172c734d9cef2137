"""Recommendations fixtures: events recorded through the real ingestion API (the small
catalog of tests/events: gpt-4o 2.5 in / 1.25 cached / 10 out, gpt-4o-mini 0.15 /
0.075 / 0.6 USD per MTok), and helpers to compute and read the findings."""

from __future__ import annotations

import importlib
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps as django_apps

from apps.recommendations.models import Recommendation
from apps.recommendations.services import recommendations_compute
from tests.analytics.conftest import at, event, ingest
from tests.events.conftest import (  # noqa: F401  (fixtures)
    _fresh_process_caches,
    catalog,
    catalog_file,
)

_SHIPPED = importlib.import_module("apps.recommendations.migrations.0002_default_comparable_models")

LIST = "/api/recommendations"


@pytest.fixture(autouse=True)
def _shipped_comparable_models(django_db_blocker: Any) -> None:
    """The data migration's pairs: a transactional test elsewhere flushes the tables
    (migration data included), so they are loaded again, as the migration loads them."""
    with django_db_blocker.unblock():
        _SHIPPED.load(django_apps, None)


COMPUTE = "/api/recommendations/compute"


def spend(client: Any, customer: str, feature: str, *, cost: str, revenue: str = "0") -> None:
    """One event of ``customer`` on ``feature`` with this cost and revenue (USD), a day ago."""
    ingest(
        client,
        event(customer, feature, when=at(1), cost=cost, revenue=revenue, model="gpt-4o"),
    )


def findings(environment: Any, kind: str | None = None) -> dict[str, Recommendation]:
    """The stored findings by subject."""
    from apps.core.tenancy import scoped

    rows = scoped(Recommendation, environment)
    if kind:
        rows = rows.filter(kind=kind)
    return {row.subject: row for row in rows}


def compute(environment: Any, **kwargs: Any) -> Any:
    return recommendations_compute(environment=environment, **kwargs)


def stake(row: Recommendation) -> Decimal:
    return row.money_at_stake_monthly
