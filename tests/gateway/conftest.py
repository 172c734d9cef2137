"""The gateway live (tanso.asgi under uvicorn in a thread), forwarding to the fake
provider on loopback; the catalog of the SDK tests; a key with ``proxy.chat``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from apps.apikeys import scopes as S
from apps.events.models import Event
from apps.gateway.services import credential_set
from tests.conftest import Tenant, make_tenant
from tests.events.conftest import CATALOG
from tests.factories import make_key
from tests.fakeprovider import FakeProvider
from tests.mcp.conftest import AsgiServer, free_port

MILLION = Decimal(1_000_000)


@pytest.fixture
def acme(transactional_db: Any) -> Tenant:
    return make_tenant("Acme")


@pytest.fixture
def catalog_loaded(transactional_db: Any, tmp_path: Path) -> None:
    from apps.core import memo
    from apps.pricing.services import catalog_sync

    path = tmp_path / "prices.json"
    path.write_text(json.dumps(CATALOG))
    catalog_sync(source=str(path))
    memo.clear_all()


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


@pytest.fixture
def server(transactional_db: Any, catalog_loaded: None) -> Iterator[AsgiServer]:
    live = AsgiServer(free_port())
    live.start()
    yield live
    live.stop()


@dataclass
class Setup:
    tenant: Tenant
    fake: FakeProvider
    server: AsgiServer
    key: str  # an obs_ key with proxy.chat

    @property
    def openai_url(self) -> str:
        return self.server.url + "/gateway/openai/v1"

    @property
    def anthropic_url(self) -> str:
        return self.server.url + "/gateway/anthropic"


def connect(tenant: Tenant, fake: FakeProvider, *, env: str = "test") -> None:
    environment = tenant.test if env == "test" else tenant.live
    credential_set(
        environment=environment,
        provider="openai",
        secret=f"sk-openai-{env}-secret",
        base_url=fake.openai_url,
    )
    credential_set(
        environment=environment,
        provider="anthropic",
        secret=f"sk-ant-{env}-secret",
        base_url=fake.anthropic_url,
    )


@pytest.fixture
def gw(acme: Tenant, fake: FakeProvider, server: AsgiServer) -> Setup:
    connect(acme, fake)
    key = make_key(acme.test, "obs", scopes=[S.PROXY_CHAT]).plaintext
    return Setup(tenant=acme, fake=fake, server=server, key=key)


def events_of(tenant: Tenant, *, count: int | None = None, timeout: float = 10) -> list[Event]:
    """The environment's events, waiting (up to ``timeout``) until there are ``count``."""
    deadline = time.monotonic() + timeout
    while True:
        events = list(
            Event.objects.filter(environment_id=tenant.test.pk)
            .select_related("customer", "feature")
            .order_by("id")
        )
        if count is None or len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def gpt_4o_mini_cost(fake: FakeProvider) -> Decimal:
    """The test catalog's gpt-4o-mini: input 0.15, cached input 0.075, output 0.6 per
    million tokens (reasoning tokens are output tokens)."""
    usage = fake.script.usage
    uncached = usage.input_tokens - usage.cached_tokens
    return (
        uncached * Decimal("0.15")
        + usage.cached_tokens * Decimal("0.075")
        + usage.output_tokens * Decimal("0.6")
    ) / MILLION


def claude_sonnet_cost(fake: FakeProvider) -> Decimal:
    """claude-sonnet-4: input 3, cache write 3.75, cache read 0.3, output 15."""
    usage = fake.script.usage
    uncached = usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens
    return (
        uncached * Decimal(3)
        + usage.cache_write_tokens * Decimal("3.75")
        + usage.cached_tokens * Decimal("0.3")
        + usage.output_tokens * Decimal(15)
    ) / MILLION
