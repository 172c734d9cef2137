"""Recommendations fixtures: events recorded through the real ingestion API (the small
catalog of tests/events: gpt-4o 2.5 in / 1.25 cached / 10 out, gpt-4o-mini 0.15 /
0.075 / 0.6 USD per MTok), and helpers to compute and read the findings."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from apps.recommendations.models import Recommendation
from apps.recommendations.services import recommendations_compute
from tests.analytics.conftest import at, event, ingest
from tests.events.conftest import (  # noqa: F401  (fixtures)
    _fresh_process_caches,
    catalog,
    catalog_file,
)

LIST = "/api/recommendations"
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
