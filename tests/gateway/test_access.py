"""Who may call the gateway, and with whose provider key: scopes, environments, outsiders."""

from __future__ import annotations

import anthropic
import openai
import pytest

from apps.apikeys import scopes as S
from tests.conftest import Tenant, make_tenant
from tests.factories import make_key
from tests.gateway.conftest import Setup, connect, events_of

MESSAGES = [{"role": "user", "content": "hi"}]


def chat(gw: Setup, key: str) -> openai.types.chat.ChatCompletion:
    sdk = openai.OpenAI(base_url=gw.openai_url, api_key=key, max_retries=0)
    return sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_a_key_without_proxy_chat_is_403_in_each_providers_shape(gw: Setup) -> None:
    key = make_key(gw.tenant.test, "obs", scopes=[S.USAGE_READ]).plaintext
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(gw, key)
    assert caught.value.code == "scope_denied"
    sdk = anthropic.Anthropic(base_url=gw.anthropic_url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError):
        sdk.messages.create(model="claude-sonnet-4", max_tokens=10, messages=MESSAGES)
    assert gw.fake.received == []


def test_no_key_or_a_bad_key_is_401(gw: Setup) -> None:
    with pytest.raises(openai.AuthenticationError):
        chat(gw, "sk_test_" + "0" * 32)
    sdk = anthropic.Anthropic(base_url=gw.anthropic_url, api_key="nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        sdk.messages.create(model="claude-sonnet-4", max_tokens=10, messages=MESSAGES)
    assert gw.fake.received == []


def test_each_environment_forwards_with_its_own_provider_key(gw: Setup) -> None:
    live_key = make_key(gw.tenant.live, "obs", scopes=[S.PROXY_CHAT]).plaintext
    # The live environment has no provider key yet: the test one is never borrowed.
    with pytest.raises(openai.BadRequestError) as caught:
        chat(gw, live_key)
    assert caught.value.code == "provider_not_configured"
    assert gw.fake.received == []
    connect(gw.tenant, gw.fake, env="live")
    chat(gw, live_key)
    chat(gw, gw.key)
    calls = gw.fake.calls("/v1/chat/completions")
    sent = [{k.lower(): v for k, v in c.headers.items()}["authorization"] for c in calls]
    assert sent == ["Bearer sk-openai-live-secret", "Bearer sk-openai-test-secret"]
    assert len(events_of(gw.tenant, count=1)) == 1  # the test environment's own call only


def test_an_outsider_never_reaches_the_tenants_provider_key_or_events(gw: Setup) -> None:
    outsider: Tenant = make_tenant("Outsider Inc")
    key = make_key(outsider.test, "obs", scopes=[S.PROXY_CHAT]).plaintext
    with pytest.raises(openai.BadRequestError):
        chat(gw, key)
    assert gw.fake.received == []
    chat(gw, gw.key)
    assert events_of(outsider, timeout=0.3) == []
    assert len(events_of(gw.tenant, count=1)) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Tanso-Meta": "[1, 2]"},
        {"X-Tanso-Meta": "{not json"},
        {"X-Tanso-Meta": '{"a": "' + "x" * 9000 + '"}'},
        {"X-Tanso-Customer": "c" * 256},
    ],
)
def test_a_bad_attribution_header_is_400_and_nothing_is_forwarded(
    gw: Setup, headers: dict[str, str]
) -> None:
    sdk = openai.OpenAI(
        base_url=gw.openai_url, api_key=gw.key, max_retries=0, default_headers=headers
    )
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert gw.fake.received == []
