"""Helpers of the alerts tests: events written through the real ingestion pipeline, and
a real webhook receiver on loopback."""

from __future__ import annotations

import datetime as dt
import http.server
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from apps.accounts.models import Environment
from apps.events.ingest import events_ingest


def ingest(
    env: Environment,
    *,
    cost: str | None,
    at: dt.datetime,
    key_id: uuid.UUID | None = None,
    customer: str = "cus_1",
    feature: str = "chat",
    model: str | None = None,
    revenue: str | None = None,
) -> None:
    item = event(cost=cost, at=at, customer=customer, feature=feature, model=model, revenue=revenue)
    result = events_ingest(environment=env, items=[item], api_key_id=key_id)
    assert result.accepted == 1, result.errors


def ingest_daily(env: Environment, *, cost: str, end: dt.datetime, days: int) -> None:
    """One event of ``cost`` an hour before each of the ``days`` days before ``end``."""
    items = [event(cost=cost, at=end - dt.timedelta(days=d, hours=1)) for d in range(1, days + 1)]
    result = events_ingest(environment=env, items=items, api_key_id=None)
    assert result.accepted == days, result.errors


def event(
    *,
    cost: str | None,
    at: dt.datetime,
    customer: str = "cus_1",
    feature: str = "chat",
    model: str | None = None,
    revenue: str | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "eventIdempotencyKey": uuid.uuid4().hex,
        "eventName": "call",
        "customerReferenceId": customer,
        "featureKey": feature,
        "occurredAt": at.isoformat(),
    }
    if cost is not None:
        item["costAmount"] = cost
    if revenue is not None:
        item["revenueAmount"] = revenue
    if model is not None:
        item["model"] = model
        item["inputTokens"] = 10
        item["outputTokens"] = 10
    return item


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver: answers the scripted statuses in turn (then 200)."""

    url: str
    script: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)


@contextmanager
def receiver(script: list[int] | None = None) -> Iterator[Receiver]:
    state = Receiver(url="", script=list(script or []))
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with lock:
                state.received.append(
                    Received({k.lower(): v for k, v in self.headers.items()}, body)
                )
                code = state.script.pop(0) if state.script else 200
            self.send_response(code)
            self.send_header("content-type", "text/plain")
            self.end_headers()
            self.wfile.write(f"answer {code}".encode())

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
