"""The official Anthropic SDK through the gateway: message_start usage plus the
cumulative message_delta usage, cache reads and writes stored and priced."""

from __future__ import annotations

import anthropic
import pytest

from tests.gateway.conftest import Setup, claude_sonnet_cost, events_of

MESSAGES = [{"role": "user", "content": "hi"}]
MODEL = "claude-sonnet-4-20250514"


def client(gw: Setup, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gw.anthropic_url, api_key=gw.key, default_headers=headers, max_retries=0
    )


def test_a_message_is_forwarded_with_the_environments_key_and_metered(gw: Setup) -> None:
    raw = client(gw, **{"X-Tolvyn-End-Customer": "cus_alias"}).messages.with_raw_response.create(
        model=MODEL, max_tokens=1000, messages=MESSAGES
    )
    message = raw.parse()
    assert message.content[0].text == "hello"  # type: ignore[union-attr]
    (seen,) = gw.fake.calls("/v1/messages")
    headers = {name.lower(): value for name, value in seen.headers.items()}
    assert headers["x-api-key"] == "sk-ant-test-secret"
    assert "authorization" not in headers
    assert not [h for h in headers if h.startswith(("x-tanso", "x-tolvyn"))]
    (event,) = events_of(gw.tenant, count=1)
    assert raw.headers["x-tanso-event-id"] == str(event.pk)
    assert event.customer.reference_id == "cus_alias"
    # The whole prompt: uncached 900 + cache read 200 + cache write 100.
    assert (event.input_tokens, event.output_tokens) == (1200, 300)
    assert (event.cache_read_tokens, event.cache_write_tokens) == (200, 100)
    assert event.cost_usd == claude_sonnet_cost(gw.fake)
    assert event.meta["usage"]["cache_creation_input_tokens"] == 100


def test_a_stream_is_metered_from_message_start_and_the_last_delta(gw: Setup) -> None:
    with client(gw).messages.stream(model=MODEL, max_tokens=1000, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
    assert text == "".join(f"hello{i}" for i in range(5))
    (event,) = events_of(gw.tenant, count=1)
    assert (event.input_tokens, event.output_tokens, event.cache_read_tokens) == (1200, 300, 200)
    assert event.cache_write_tokens == 100
    assert event.cost_usd == claude_sonnet_cost(gw.fake)
    assert event.meta["gateway"]["status"] == "completed"


def test_a_client_leaving_after_three_chunks_is_billed_the_full_usage(gw: Setup) -> None:
    gw.fake.script.chunks, gw.fake.script.chunk_delay = 20, 0.05
    with client(gw).messages.create(
        model=MODEL, max_tokens=1000, messages=MESSAGES, stream=True
    ) as stream:
        for count, _event in enumerate(stream, start=1):
            if count == 3:
                break
    (event,) = events_of(gw.tenant, count=1, timeout=15)
    assert event.output_tokens == 300  # the final message_delta, read after the client left
    assert event.cost_usd == claude_sonnet_cost(gw.fake)
    assert event.meta["gateway"]["status"] == "client_disconnected"
    assert event.meta["gateway"]["usageEstimated"] is False


def test_count_tokens_is_forwarded_and_not_billed(gw: Setup) -> None:
    counted = client(gw).messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert counted.input_tokens == 1200
    assert events_of(gw.tenant, timeout=0.3) == []


def test_an_overloaded_provider_reaches_the_client_as_itself(gw: Setup) -> None:
    gw.fake.script.fail_status, gw.fake.script.fail_times = 529, 1
    with pytest.raises(anthropic.APIStatusError) as caught:
        client(gw).messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    assert caught.value.status_code == 529
    assert events_of(gw.tenant, timeout=0.3) == []
