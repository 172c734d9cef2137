"""Hard per-key budgets: concurrent calls never settle past the cap; the headroom is used
(max tokens lowered to fit) before anything is refused; a Redis flush or outage keeps the
budget right (PostgreSQL is the truth)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anthropic
import pytest

from apps.apikeys import scopes as S
from apps.apikeys.models import ApiKeySpend
from apps.core.redis import get_redis
from tests.factories import make_key
from tests.gateway.conftest import Setup, events_of
from tests.redis_outage import app_redis, dead_url

MODEL = "claude-sonnet-4-20250514"
MESSAGES = [{"role": "user", "content": "hi"}]
# The smallest answer forwarded: the prompt's bytes as tokens at $3/M plus 16 at $15/M.
LEAST = Decimal("0.001")


@dataclass
class Run:
    ok: int = 0
    refused: list[Any] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.refused = []


def budget_key(gw: Setup, cents: int, period: str | None = None) -> str:
    gw.fake.script.usage.input_tokens = 20
    gw.fake.script.usage.cached_tokens = 0
    gw.fake.script.usage.cache_write_tokens = 0
    gw.fake.script.usage.output_tokens = 2000
    issued = make_key(
        gw.tenant.test,
        "obs",
        scopes=[S.PROXY_CHAT],
        budget_cents=cents,
        budget_period=period,
    )
    return issued.plaintext


async def _calls(gw: Setup, key: str, count: int, run: Run) -> None:
    sdk = anthropic.AsyncAnthropic(base_url=gw.anthropic_url, api_key=key, max_retries=0)

    async def one() -> None:
        try:
            await sdk.messages.create(model=MODEL, max_tokens=2000, messages=MESSAGES)
            run.ok += 1
        except anthropic.APIStatusError as exc:
            run.refused.append(exc.response)

    await asyncio.gather(*(one() for _ in range(count)))
    await sdk.close()


def calls(gw: Setup, key: str, count: int, run: Run | None = None) -> Run:
    run = run or Run()
    asyncio.run(_calls(gw, key, count, run))
    return run


def settled(gw: Setup, run: Run) -> Decimal:
    events = events_of(gw.tenant, count=run.ok)
    assert len(events) == run.ok
    total = sum((e.cost_usd for e in events), Decimal(0))
    assert all(e.cost_usd is not None for e in events)
    spend = sum(ApiKeySpend.objects.values_list("spent_usd", flat=True), Decimal(0))
    assert spend == total  # PostgreSQL's spend is the settled events
    return total


def asked_max_tokens(gw: Setup) -> list[int]:
    return [c.body["max_tokens"] for c in gw.fake.calls("/v1/messages")]


def test_forty_concurrent_calls_settle_within_fifty_cents(gw: Setup) -> None:
    key = budget_key(gw, 50, "day")
    run = calls(gw, key, 40)
    total = settled(gw, run)
    assert total <= Decimal("0.50")
    # The headroom is used: ~$0.03 a call fits 16 times before anything is refused.
    assert run.ok >= 16 and total > Decimal("0.48")
    assert run.refused, "forty $0.03 calls cannot all fit in $0.50"
    for refusal in run.refused:
        assert refusal.status_code == 402
        assert refusal.json()["error"]["type"] == "billing_error"
        assert Decimal(refusal.headers["x-tanso-budget-remaining"]) < LEAST
        assert 0 < int(refusal.headers["retry-after"]) <= 86400
    assert all(0 < asked <= 2000 for asked in asked_max_tokens(gw))


def test_with_a_hundred_dollars_nothing_is_refused_or_lowered(gw: Setup) -> None:
    key = budget_key(gw, 100_00)
    run = calls(gw, key, 40)
    assert (run.ok, run.refused) == (40, [])
    assert asked_max_tokens(gw) == [2000] * 40
    settled(gw, run)


def test_a_redis_flush_mid_run_keeps_the_budget(gw: Setup) -> None:
    key = budget_key(gw, 50)
    run = calls(gw, key, 10)
    get_redis().flushdb()
    calls(gw, key, 30, run)
    total = settled(gw, run)
    assert Decimal("0.48") < total <= Decimal("0.50")
    assert {r.status_code for r in run.refused} == {402}


def test_with_redis_down_the_database_keeps_the_budget(gw: Setup) -> None:
    key = budget_key(gw, 50)
    with app_redis(dead_url()):
        run = calls(gw, key, 40)
    total = settled(gw, run)
    assert Decimal("0.48") < total <= Decimal("0.50") and run.refused
    # Back on Redis, the window is rebuilt from PostgreSQL: at most the rest of the
    # headroom is used (one call, its max tokens lowered), then everything is refused.
    calls(gw, key, 5, run)
    assert settled(gw, run) <= Decimal("0.50")
    assert len(run.refused) >= 4
    assert {r.status_code for r in run.refused} == {402}


def test_an_unpriced_model_under_a_budget_is_refused(gw: Setup) -> None:
    key = budget_key(gw, 50)
    sdk = anthropic.Anthropic(base_url=gw.anthropic_url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk.messages.create(model="claude-unknown-9", max_tokens=10, messages=MESSAGES)
    assert "model_unpriced" in str(caught.value.body)
    assert gw.fake.received == []
