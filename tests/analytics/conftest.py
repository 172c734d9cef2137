"""Analytics fixtures: events recorded through the real ingestion API, at chosen times."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from typing import Any

from django.utils import timezone

# The small price catalog of the event tests (gpt-4o: input 2.5, output 10 USD per MTok).
from tests.events.conftest import (  # noqa: F401  (fixtures)
    _fresh_process_caches,
    catalog,
    catalog_file,
)

INGEST = "/api/events/ingest"
CLIENT_EVENTS = "/api/v1/client/events"


def midnight(days_ago: int = 0) -> dt.datetime:
    """00:00 UTC of the day ``days_ago`` days before today."""
    today = timezone.now().astimezone(dt.UTC).date()
    day = today - dt.timedelta(days=days_ago)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def at(days_ago: int, hour: int = 12, minute: int = 0, second: int = 0) -> str:
    """An ISO timestamp ``days_ago`` days back at hh:mm:ss UTC (days_ago >= 1: never future)."""
    moment = midnight(days_ago) + dt.timedelta(hours=hour, minutes=minute, seconds=second)
    return moment.isoformat().replace("+00:00", "Z")


def event(
    customer: str = "cus_a",
    feature: str = "chat",
    *,
    when: str | None = None,
    cost: str | None = None,
    revenue: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """One Observe ingest item; amounts as strings (exact), like a careful client sends."""
    body: dict[str, Any] = {
        "eventName": fields.pop("eventName", "chat"),
        "customerReferenceId": customer,
        "featureKey": feature,
        "idempotencyKey": fields.pop("idempotencyKey", str(uuid.uuid4())),
        "occurredAt": when or at(1),
    }
    if cost is not None:
        body["costAmount"] = cost
    if revenue is not None:
        body["revenueAmount"] = revenue
    body.update(fields)
    return body


def ingest(client: Any, *events: dict[str, Any]) -> list[str]:
    """Record events through POST /api/events/ingest; returns their ids."""
    response = client.post(INGEST, {"events": list(events)}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["accepted"] == len(events), body
    return [item["id"] for item in body["events"]]


def csv_rows(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["requestId"]
    return error


# --- One small, hand-computed dataset -----------------------------------------------------
#
# Recorded through POST /api/events/ingest into the tenant's test environment. Costs
# use the catalog of tests/events/conftest.py (gpt-4o: 2.5 in / 10 out USD per MTok).
#
# id  customer  feature  when          model / provider           cost          revenue  ms
# e1  cus_a     chat     1 day, 10:00  gpt-4o / openai            0.1 (given)   0.3      100
# e2  cus_a     chat     1 day, 11:00  gpt-4o / openai            0.2 (given)   0.1      200
# e3  cus_b     search   2 days, 9:00  gpt-4o / openai            0.0035 (*)    0.01     300
# e4  cus_b     search   3 days, 9:00  mystery-1 / -              unpriced      0.005    -
# e5  cus_c     chat     5 days, 0:00  claude-sonnet-4 / anthr.   0.7 (given)   -        1000
# e6  cus_a     chat     40 days       gpt-4o / openai            100 (given)   -        -
# (*) 1000 input x 2.5 / 1e6 + 100 output x 10 / 1e6 = 0.0025 + 0.001
#
# In the default window (the last 30 days): e1..e5.
#   events 5, cost 0.1 + 0.2 + 0.0035 + 0.7 = 1.0035, revenue 0.415, margin -0.5885,
#   margin % -0.5885 / 0.415 x 100 = -141.807... -> -141.81, unpriced 1,
#   customers 3, features 2, models 3.
# cus_a: 2 events, cost 0.3 (0.1 + 0.2, exactly), revenue 0.4, margin 0.1, 25%
# cus_b: 2 events, cost 0.0035, revenue 0.015, margin 0.0115, 76.666... -> 76.67%, unpriced 1
# cus_c: 1 event, cost 0.7, revenue 0, margin -0.7, margin % null


class Dataset:
    def __init__(self, ids: list[str]) -> None:
        self.e1, self.e2, self.e3, self.e4, self.e5, self.e6 = ids


def record_dataset(client: Any) -> Dataset:
    ids = ingest(
        client,
        event(
            "cus_a",
            "chat",
            when=at(1, 10),
            cost="0.1",
            revenue="0.3",
            model="gpt-4o",
            modelProvider="openai",
            durationMs=100,
            traceId="trace-1",
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
            traceId="trace-1",
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
        event("cus_b", "search", when=at(3, 9), revenue="0.005", model="mystery-1", inputTokens=10),
        event(
            "cus_c",
            "chat",
            when=at(5, 0),
            cost="0.7",
            model="claude-sonnet-4",
            modelProvider="anthropic",
            durationMs=1000,
        ),
        event("cus_a", "chat", when=at(40, 12), cost="100", model="gpt-4o", modelProvider="openai"),
    )
    return Dataset(ids)
