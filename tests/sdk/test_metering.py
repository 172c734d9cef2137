"""``wrap``: the official OpenAI and Anthropic SDKs, pointed at the fake provider, metered
into the live server. One event per call, with the provider's tokens and the catalog's
cost, whether the call streamed, was abandoned mid-stream, or ran under asyncio."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from types import ModuleType
from typing import Any

import anthropic
import openai
import pytest

from apps.events.models import Event
from tests.conftest import Tenant
from tests.fakeprovider import FakeProvider

MILLION = Decimal(1_000_000)
MESSAGES = [{"role": "user", "content": "hi"}]


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


@pytest.fixture
def tanso(tansohq: ModuleType, acme: Tenant, live_server: Any, catalog_loaded: None) -> Any:
    client = tansohq.Tanso(acme.sk_test, base_url=live_server.url, flush_interval=0.2)
    yield client
    client.close(timeout=10)


def stored(tenant: Tenant) -> list[Event]:
    return list(
        Event.objects.filter(environment_id=tenant.test.pk)
        .select_related("customer", "feature")
        .order_by("id")
    )


def test_fifty_calls_streamed_abandoned_and_async_make_fifty_priced_events(
    tanso: Any, acme: Tenant, fake: FakeProvider
) -> None:
    fake.script.chunks = 6
    oa = tanso.wrap(
        openai.OpenAI(base_url=fake.openai_url, api_key="sk-fake"), customer="cus_a", feature="chat"
    )
    an = tanso.wrap(
        anthropic.Anthropic(base_url=fake.anthropic_url, api_key="sk-ant-fake"),
        customer="cus_b",
        feature="summaries",
    )
    for _ in range(8):  # 8 plain chat completions
        oa.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    for _ in range(8):  # 8 streams read to the end
        chunks = list(
            oa.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        )
        assert len(chunks) == 6 and all(chunk.choices for chunk in chunks)
    for i in range(6):  # 6 streams the caller leaves after two chunks
        stream = oa.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        for n, _chunk in enumerate(stream):
            if n == 1:
                break
        if i % 2:
            stream.close()
        del stream  # the other half are simply dropped
    for _ in range(4):  # 4 Responses calls, 2 streamed
        oa.responses.create(model="gpt-4o-mini", input="hi")
    for _ in range(2):
        list(oa.responses.create(model="gpt-4o-mini", input="hi", stream=True))
    for _ in range(6):  # 6 Anthropic messages, 6 streams, 4 of them left early
        an.messages.create(model="claude-sonnet-4-20250514", max_tokens=50, messages=MESSAGES)
    for i in range(6):
        with an.messages.stream(
            model="claude-sonnet-4-20250514", max_tokens=50, messages=MESSAGES
        ) as stream:
            for n, _text in enumerate(stream.text_stream):
                if i < 4 and n == 1:
                    break

    async def async_calls() -> None:  # 10 async calls: streamed, abandoned, plain
        aoa = tanso.wrap(
            openai.AsyncOpenAI(base_url=fake.openai_url, api_key="sk-fake"),
            customer="cus_c",
            feature="chat",
        )
        aan = tanso.wrap(
            anthropic.AsyncAnthropic(base_url=fake.anthropic_url, api_key="sk-ant-fake"),
            customer="cus_c",
            feature="summaries",
        )

        async def streamed(leave_early: bool) -> None:
            stream = await aoa.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            async for n, _chunk in _enumerate(stream):
                if leave_early and n == 1:
                    break
            await stream.close()

        await asyncio.gather(
            *(streamed(leave_early=i % 2 == 0) for i in range(6)),
            *(
                aoa.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                for _ in range(2)
            ),
            *(
                aan.messages.create(
                    model="claude-sonnet-4-20250514", max_tokens=50, messages=MESSAGES
                )
                for _ in range(2)
            ),
        )
        assert await tanso_flush_async(tanso)

    asyncio.run(async_calls())
    assert tanso.flush(timeout=30)

    events = stored(acme)
    assert len(events) == 50
    assert len({event.idempotency_key for event in events}) == 50
    usage = fake.script.usage
    for event in events:
        assert event.input_tokens == usage.input_tokens, event.meta
        assert event.output_tokens == usage.output_tokens
        assert event.cache_read_tokens == usage.cached_tokens
        assert "usageMissing" not in event.meta
        if event.provider == "openai":
            assert event.model == "gpt-4o-mini"
            assert event.reasoning_tokens == usage.reasoning_tokens
            assert event.cost_usd == gpt_4o_mini_cost(fake)
        else:
            assert event.provider == "anthropic"
            assert event.cache_write_tokens == usage.cache_write_tokens
            assert event.cost_usd == claude_sonnet_cost(fake)
    by_customer = dict.fromkeys(("cus_a", "cus_b", "cus_c"), 0)
    for event in events:
        by_customer[event.customer.reference_id] += 1
    assert by_customer == {"cus_a": 28, "cus_b": 12, "cus_c": 10}
    assert sum(1 for event in events if event.meta.get("stream")) == 8 + 6 + 2 + 6 + 6


async def _enumerate(stream: Any) -> Any:
    n = 0
    async for item in stream:
        yield n, item
        n += 1


async def tanso_flush_async(tanso: Any) -> bool:
    # A sync client used from asyncio: flush in a thread, so that the streams this loop
    # is reading in the background can finish meanwhile.
    return bool(await asyncio.to_thread(tanso.flush, 20))


def test_the_provider_sees_neither_the_tanso_argument_nor_the_usage_chunk_it_did_not_ask_for(
    tanso: Any, acme: Tenant, fake: FakeProvider
) -> None:
    client = tanso.wrap(openai.OpenAI(base_url=fake.openai_url, api_key="sk-fake"))
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            tanso={"customer": "cus_call", "feature": "search", "trace": "tr_1"},
        )
    )
    # The caller's stream is the provider's, without the usage chunk the SDK asked for.
    assert [chunk.choices[0].delta.content for chunk in chunks] == [f"hello{i}" for i in range(5)]
    # A caller who asked for usage keeps it.
    asked = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            tanso={"customer": "cus_call", "feature": "search"},
        )
    )
    assert asked[-1].usage is not None and asked[-1].choices == []
    for received in fake.calls("/v1/chat/completions"):
        assert "tanso" not in received.body
        assert received.body["stream_options"] == {"include_usage": True}
        assert not any(name.lower().startswith("x-tanso") for name in received.headers)
    assert tanso.flush(timeout=20)
    first, second = stored(acme)
    assert (first.customer.reference_id, first.feature.key, first.trace_id) == (
        "cus_call",
        "search",
        "tr_1",
    )
    assert first.meta["providerUsage"]["prompt_tokens"] == fake.script.usage.input_tokens
    assert second.input_tokens == fake.script.usage.input_tokens


def test_attribution_follows_the_context_into_asyncio_tasks(
    tansohq: ModuleType, tanso: Any, acme: Tenant, fake: FakeProvider
) -> None:
    client = tanso.wrap(
        anthropic.AsyncAnthropic(base_url=fake.anthropic_url, api_key="sk-ant-fake"),
        customer="cus_default",
        feature="default_feature",
    )

    async def call(tanso_arg: dict[str, str] | None = None) -> None:
        kwargs: dict[str, Any] = {"tanso": tanso_arg} if tanso_arg else {}
        await client.messages.create(
            model="claude-sonnet-4-20250514", max_tokens=10, messages=MESSAGES, **kwargs
        )

    async def main() -> None:
        with tansohq.attribute(customer="cus_ctx", trace="trace_ctx"):
            await asyncio.gather(
                asyncio.create_task(call()), asyncio.create_task(call({"feature": "override"}))
            )
        await call()

    asyncio.run(main())
    assert tanso.flush(timeout=20)
    got = sorted((e.customer.reference_id, e.feature.key, e.trace_id) for e in stored(acme))
    assert got == [
        ("cus_ctx", "default_feature", "trace_ctx"),
        ("cus_ctx", "override", "trace_ctx"),
        ("cus_default", "default_feature", ""),
    ]


def test_missing_usage_is_recorded_as_missing_never_as_zero(
    tanso: Any, acme: Tenant, fake: FakeProvider
) -> None:
    fake.script.send_usage = False
    client = tanso.wrap(openai.OpenAI(base_url=fake.openai_url, api_key="sk-fake"), customer="c1")
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    client.embeddings.create(model="text-embedding-3-small", input="hi")
    assert tanso.flush(timeout=20)
    events = stored(acme)
    assert len(events) == 3
    for event in events:
        assert event.input_tokens is None and event.output_tokens is None
        assert event.cost_usd is None, "an unknown cost is never zero"
        assert event.meta["usageMissing"]


def test_embeddings_and_cache_tokens_as_the_provider_reported_them(
    tanso: Any, acme: Tenant, fake: FakeProvider
) -> None:
    oa = tanso.wrap(openai.OpenAI(base_url=fake.openai_url, api_key="sk-fake"), customer="c1")
    an = tanso.wrap(anthropic.Anthropic(base_url=fake.anthropic_url, api_key="k"), customer="c1")
    oa.embeddings.create(model="text-embedding-3-small", input="hi")
    an.messages.create(model="claude-sonnet-4-20250514", max_tokens=10, messages=MESSAGES)
    assert tanso.flush(timeout=20)
    embedding, message = stored(acme)
    usage = fake.script.usage
    assert (embedding.input_tokens, embedding.output_tokens) == (usage.input_tokens, 0)
    assert embedding.event_name == "embeddings"
    # Anthropic's input_tokens leaves out the cache; the event's inputTokens is the whole prompt.
    assert message.meta["providerUsage"]["input_tokens"] == 900
    assert (message.input_tokens, message.cache_read_tokens, message.cache_write_tokens) == (
        1200,
        200,
        100,
    )
