"""The official OpenAI SDK through the gateway to the fake provider: answers unchanged,
one event per call with the provider's tokens and the catalog's cost."""

from __future__ import annotations

import json
from decimal import Decimal

import openai
import pytest

from tests.gateway.conftest import Setup, events_of, gpt_4o_mini_cost

MESSAGES = [{"role": "user", "content": "hi"}]


def client(gw: Setup, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gw.openai_url, api_key=gw.key, default_headers=headers, max_retries=0
    )


def test_a_call_is_forwarded_with_the_environments_key_and_metered(gw: Setup) -> None:
    answer = client(
        gw,
        **{
            "X-Tanso-Customer": "cus_42",
            "X-Tanso-Feature": "summaries",
            "X-Tanso-Trace": "trace-7",
            "X-Tanso-Meta": json.dumps({"team": "growth"}),
        },
    ).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = answer.parse()
    assert completion.choices[0].message.content == "hello"
    assert completion.usage is not None and completion.usage.prompt_tokens == 1200
    (seen,) = gw.fake.calls("/v1/chat/completions")
    headers = {name.lower(): value for name, value in seen.headers.items()}
    assert headers["authorization"] == "Bearer sk-openai-test-secret"
    assert not [h for h in headers if h.startswith(("x-tanso", "x-tolvyn"))]
    assert "stream_options" not in seen.body  # nothing added to a non-streamed call

    (event,) = events_of(gw.tenant, count=1)
    assert answer.headers["x-tanso-event-id"] == str(event.pk)
    assert float(answer.headers["x-tanso-overhead-ms"]) >= 0
    assert event.customer.reference_id == "cus_42"
    assert event.feature.key == "summaries"
    assert event.trace_id == "trace-7"
    assert (event.model, event.provider) == ("gpt-4o-mini", "openai")
    assert (event.input_tokens, event.output_tokens) == (1200, 300)
    assert (event.cache_read_tokens, event.reasoning_tokens) == (200, 40)
    assert event.cost_usd == gpt_4o_mini_cost(gw.fake)
    assert event.api_key_id is not None
    assert event.meta["team"] == "growth"
    assert event.meta["usage"]["prompt_tokens_details"] == {"cached_tokens": 200}
    assert event.meta["gateway"]["usageEstimated"] is False
    assert event.duration_ms is not None
    # Metadata only: neither the prompt nor the answer is stored.
    assert "hi" not in json.dumps(event.meta) and "hello" not in json.dumps(event.meta)


def test_a_stream_reaches_the_client_unchanged_and_is_metered_in_full(gw: Setup) -> None:
    chunks = list(
        client(gw).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    )
    # The client did not ask for usage: it gets no usage chunk, only the content.
    assert [c.choices[0].delta.content for c in chunks] == [f"hello{i}" for i in range(5)]
    assert all(c.usage is None for c in chunks)
    (seen,) = gw.fake.calls("/v1/chat/completions")
    assert seen.body["stream_options"] == {"include_usage": True}
    # Written before the stream's [DONE] reached the client: there already.
    (event,) = events_of(gw.tenant, timeout=0)
    assert (event.input_tokens, event.output_tokens, event.cache_read_tokens) == (1200, 300, 200)
    assert event.cost_usd == gpt_4o_mini_cost(gw.fake)
    assert event.customer.reference_id == "unassigned"


def test_a_client_that_asked_for_usage_gets_its_usage_chunk(gw: Setup) -> None:
    chunks = list(
        client(gw).chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 1200
    (event,) = events_of(gw.tenant, count=1)
    assert event.output_tokens == 300


def test_the_streamed_bytes_are_the_providers(gw: Setup) -> None:
    import httpx2

    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    direct = httpx2.post(gw.fake.openai_url + "/chat/completions", json=body).content
    proxied = httpx2.post(
        gw.openai_url + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {gw.key}"},
    ).content
    assert proxied == direct


def test_a_missing_usage_is_estimated_and_marked_never_zero(gw: Setup) -> None:
    gw.fake.script.send_usage = False
    client(gw).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    (event,) = events_of(gw.tenant, count=1)
    assert event.input_tokens > 0 and event.output_tokens > 0
    assert event.meta["gateway"]["usageEstimated"] is True
    assert event.cost_usd is not None and event.cost_usd > 0


def test_an_unpriced_model_is_never_free(gw: Setup) -> None:
    answer = client(gw).embeddings.create(model="text-embedding-3-small", input="hi")
    assert answer.usage.prompt_tokens == 1200
    (event,) = events_of(gw.tenant, count=1)
    assert event.input_tokens == 1200
    assert event.cost_usd is None and event.unpriced_reason == "unknown_model"


def test_responses_api_usage_comes_from_the_terminal_event(gw: Setup) -> None:
    events = list(client(gw).responses.create(model="gpt-4o-mini", input="hi", stream=True))
    assert events[-1].type == "response.completed"
    (event,) = events_of(gw.tenant, count=1)
    assert (event.input_tokens, event.output_tokens, event.reasoning_tokens) == (1200, 300, 40)
    assert event.cost_usd == gpt_4o_mini_cost(gw.fake)


def test_models_are_listed(gw: Setup) -> None:
    assert [m.id for m in client(gw).models.list()] == ["gpt-4o-mini"]


@pytest.mark.parametrize("status", [429, 500])
def test_a_provider_error_reaches_the_client_in_its_shape_and_is_not_billed(
    gw: Setup, status: int
) -> None:
    gw.fake.script.fail_status, gw.fake.script.fail_times = status, 1
    with pytest.raises(openai.APIStatusError) as caught:
        client(gw).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.status_code == status
    assert events_of(gw.tenant, timeout=0.3) == []
    assert Decimal(0) == Decimal(0)
