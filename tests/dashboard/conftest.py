"""Dashboard fixtures: a known mix of events recorded through the real ingestion API
(the small price catalog of tests/events), in the tenant's test environment, plus
events of the live environment and of another organization that must never show."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import pytest
from django.utils import timezone

from tests.events.conftest import (  # noqa: F401  (fixtures)
    _fresh_process_caches,
    catalog,
    catalog_file,
)

INGEST = "/api/events/ingest"


def midnight(days_ago: int = 0) -> dt.datetime:
    today = timezone.now().astimezone(dt.UTC).date()
    day = today - dt.timedelta(days=days_ago)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def at(days_ago: int, hour: int = 12, minute: int = 0) -> str:
    """ISO time ``days_ago`` days back at hh:mm UTC (days_ago >= 1 is never in the future)."""
    moment = midnight(days_ago) + dt.timedelta(hours=hour, minutes=minute)
    return moment.isoformat().replace("+00:00", "Z")


def event(
    customer: str,
    feature: str,
    *,
    when: str,
    cost: str | None = None,
    revenue: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventName": fields.pop("eventName", "chat"),
        "customerReferenceId": customer,
        "featureKey": feature,
        "idempotencyKey": fields.pop("idempotencyKey", str(uuid.uuid4())),
        "occurredAt": when,
    }
    if cost is not None:
        body["costAmount"] = cost
    if revenue is not None:
        body["revenueAmount"] = revenue
    body.update(fields)
    return body


def ingest(client: Any, *events: dict[str, Any]) -> list[int]:
    response = client.post(INGEST, {"events": list(events)}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["accepted"] == len(events), body
    return [int(item["id"]) for item in body["events"]]


# The tenant's test environment (gpt-4o: 2.5 in / 10 out USD per MTok in the catalog):
#
# id  customer  feature  when           model                 cost            revenue
# e1  cus_a     chat     1 day, 10:00   gpt-4o                0.1 (given)     0.3     trace t-1
# e2  cus_a     chat     1 day, 11:00   gpt-4o                0.2 (given)     0.1     trace t-1
# e3  cus_b     search   2 days, 9:00   gpt-4o                0.0035 (catalog) 0.01
# e4  cus_b     search   3 days, 9:00   mystery-1             unpriced        0.005
# e5  cus_c     chat     5 days         claude-sonnet-4       0.7 (given)     -        underwater
# e6  cus_d     chat     10 days        gpt-4o-mini           0.01 (given)    1        healthy
# e7  cus_a     chat     40 days        gpt-4o                100 (given)     -        (previous)
@dataclasses.dataclass
class Dataset:
    ids: list[int]

    def __getattr__(self, name: str) -> int:
        if name.startswith("e") and name[1:].isdigit():
            return self.ids[int(name[1:]) - 1]
        raise AttributeError(name)


def record_dataset(tenant: Any) -> Dataset:
    api = tenant.api()
    ids = ingest(
        api,
        event(
            "cus_a",
            "chat",
            when=at(1, 10),
            cost="0.1",
            revenue="0.3",
            model="gpt-4o",
            modelProvider="openai",
            durationMs=100,
            traceId="t-1",
        ),
        event(
            "cus_a",
            "chat",
            when=at(1, 11),
            cost="0.2",
            revenue="0.1",
            model="gpt-4o",
            modelProvider="openai",
            durationMs=200,
            traceId="t-1",
            eventName="summarize",
        ),
        event(
            "cus_b",
            "search",
            when=at(2, 9),
            revenue="0.01",
            model="gpt-4o",
            modelProvider="openai",
            inputTokens=1000,
            outputTokens=100,
            durationMs=300,
        ),
        event(
            "cus_b",
            "search",
            when=at(3, 9),
            revenue="0.005",
            model="mystery-1",
            inputTokens=10,
            outputTokens=5,
        ),
        event(
            "cus_c",
            "chat",
            when=at(5, 0),
            cost="0.7",
            model="claude-sonnet-4",
            modelProvider="anthropic",
            durationMs=1000,
        ),
        event(
            "cus_d",
            "chat",
            when=at(10, 8),
            cost="0.01",
            revenue="1",
            model="gpt-4o-mini",
            modelProvider="openai",
            durationMs=50,
        ),
        event("cus_a", "chat", when=at(40, 12), cost="100", model="gpt-4o", modelProvider="openai"),
    )
    # Never visible from the test environment, nor from the tenant's pages in general.
    ingest(
        tenant.api(tenant.sk_live),
        event("cus_live_only", "live_feature", when=at(1), cost="5", revenue="7", model="gpt-4o"),
    )
    return Dataset(ids)


@pytest.fixture
def dataset(tenant: Any, request: pytest.FixtureRequest) -> Dataset:
    request.getfixturevalue("catalog")
    return record_dataset(tenant)


@pytest.fixture
def outsider_data(outsider: Any, request: pytest.FixtureRequest) -> list[int]:
    request.getfixturevalue("catalog")
    return ingest(
        outsider.api(),
        event(
            "cus_outsider",
            "secret_feature",
            when=at(1),
            cost="3",
            revenue="4",
            model="gpt-4o",
            traceId="t-out",
        ),
    )
