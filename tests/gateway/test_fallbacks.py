"""Model routes: an alias tries its targets in order, only before the first byte, on
connect errors, 408, 429, 5xx and 529; the answered attempt is the one billed."""

from __future__ import annotations

import anthropic
import openai
import pytest

from apps.gateway.services import route_set
from tests.conftest import Tenant
from tests.gateway.conftest import Setup, claude_sonnet_cost, events_of, gpt_4o_mini_cost

MESSAGES = [{"role": "user", "content": "hi"}]
URL = "/api/v1/gateway/routes"


def openai_client(gw: Setup) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_url, api_key=gw.key, max_retries=0)


def test_a_rate_limited_target_falls_back_to_the_next(gw: Setup) -> None:
    route_set(
        environment=gw.tenant.test,
        provider="openai",
        alias="smart",
        targets=["gpt-4o", "gpt-4o-mini"],
    )
    gw.fake.script.fail_status, gw.fake.script.fail_times = 429, 1
    raw = openai_client(gw).chat.completions.with_raw_response.create(
        model="smart", messages=MESSAGES
    )
    assert raw.parse().choices[0].message.content == "hello"
    assert raw.headers["x-tanso-attempts"] == "gpt-4o=429, gpt-4o-mini=200"
    assert [c.body["model"] for c in gw.fake.calls("/v1/chat/completions")] == [
        "gpt-4o",
        "gpt-4o-mini",
    ]
    (event,) = events_of(gw.tenant, count=1)
    assert event.model == "gpt-4o-mini" and event.meta["gateway"]["attempt"] == 2
    assert event.cost_usd == gpt_4o_mini_cost(gw.fake)


def test_an_overloaded_anthropic_stream_falls_back_before_its_first_byte(gw: Setup) -> None:
    route_set(
        environment=gw.tenant.test,
        provider="anthropic",
        alias="claude",
        targets=["claude-sonnet-4-20250514", "claude-sonnet-4-5"],
    )
    gw.fake.script.fail_status, gw.fake.script.fail_times = 529, 1
    sdk = anthropic.Anthropic(base_url=gw.anthropic_url, api_key=gw.key, max_retries=0)
    with sdk.messages.stream(model="claude", max_tokens=500, messages=MESSAGES) as stream:
        assert "".join(stream.text_stream) == "".join(f"hello{i}" for i in range(5))
    (event,) = events_of(gw.tenant, count=1)
    assert event.model == "claude-sonnet-4-5"
    assert event.cost_usd == claude_sonnet_cost(gw.fake)


@pytest.mark.parametrize("status", [400, 401])
def test_a_client_error_is_not_retried(gw: Setup, status: int) -> None:
    route_set(
        environment=gw.tenant.test,
        provider="openai",
        alias="smart",
        targets=["gpt-4o", "gpt-4o-mini"],
    )
    gw.fake.script.fail_status, gw.fake.script.fail_times = status, 1
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client(gw).chat.completions.create(model="smart", messages=MESSAGES)
    assert caught.value.status_code == status
    assert caught.value.response.headers["x-tanso-attempts"] == f"gpt-4o={status}"
    assert len(gw.fake.calls("/v1/chat/completions")) == 1


def test_when_every_target_fails_the_last_failure_is_answered_and_nothing_billed(
    gw: Setup,
) -> None:
    route_set(
        environment=gw.tenant.test,
        provider="openai",
        alias="smart",
        targets=["gpt-4o", "gpt-4o-mini"],
    )
    gw.fake.script.fail_status, gw.fake.script.fail_times = 503, 2
    with pytest.raises(openai.InternalServerError) as caught:
        openai_client(gw).chat.completions.create(model="smart", messages=MESSAGES)
    assert caught.value.response.headers["x-tanso-attempts"] == "gpt-4o=503, gpt-4o-mini=503"
    assert events_of(gw.tenant, timeout=0.3) == []


def test_routes_api_is_scoped_and_tenant_isolated(tenant: Tenant, outsider: Tenant) -> None:
    body = {"provider": "openai", "alias": "smart", "targets": ["gpt-4o", "gpt-4o-mini"]}
    created = tenant.api().post(URL, body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["targets"] == ["gpt-4o", "gpt-4o-mini"]
    assert [r["alias"] for r in tenant.api().get(URL).json()["items"]] == ["smart"]
    assert outsider.api().get(URL).json()["items"] == []
    assert tenant.api(tenant.sk_live).get(URL).json()["items"] == []
    detail = f"{URL}/{created.json()['id']}"
    assert outsider.api().delete(detail).status_code == 404
    too_many = {**body, "targets": ["gpt-4o"] * 6}
    assert tenant.api().post(URL, too_many, format="json").status_code == 400
    assert tenant.api().post(URL, {**body, "targets": []}, format="json").status_code == 400
    assert tenant.api().delete(detail).status_code == 204
