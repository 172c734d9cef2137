"""``/api/v1/gateway/credentials``: provider keys, encrypted at rest, shown by a hint."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.test import override_settings

from apps.apikeys import scopes as S
from apps.gateway import crypto
from apps.gateway.models import ProviderCredential
from apps.gateway.services import credentials_rotate
from tests.conftest import Tenant
from tests.factories import make_key

URL = "/api/v1/gateway/credentials"
SECRET = "sk-proj-abcdefghijklmnop1234"


def add(tenant: Tenant, **extra: Any) -> Any:
    body = {"provider": "openai", "apiKey": SECRET, **extra}
    return tenant.api().post(URL, body, format="json")


def test_a_credential_is_stored_encrypted_and_shown_by_its_hint(tenant: Tenant) -> None:
    answer = add(tenant, baseUrl="https://example.test/v1")
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["hint"] == "…1234" and body["baseUrl"] == "https://example.test/v1"
    assert SECRET not in answer.content.decode()
    stored = ProviderCredential.objects.get(pk=body["id"])
    assert SECRET not in stored.secret_encrypted
    assert crypto.decrypt(stored.secret_encrypted) == SECRET
    listed = tenant.api().get(URL).json()["items"]
    assert [c["id"] for c in listed] == [body["id"]] and SECRET not in str(listed)


def test_setting_a_provider_again_replaces_its_key(tenant: Tenant) -> None:
    first = add(tenant).json()
    second = tenant.api().post(
        URL, {"provider": "openai", "apiKey": "sk-other-key-9876"}, format="json"
    )
    assert second.json()["id"] == first["id"] and second.json()["hint"] == "…9876"
    assert ProviderCredential.objects.count() == 1


def test_an_outsider_and_the_other_environment_see_nothing(
    tenant: Tenant, outsider: Tenant
) -> None:
    credential = add(tenant).json()
    detail = f"{URL}/{credential['id']}"
    assert outsider.api().get(URL).json()["items"] == []
    assert outsider.api().get(detail).status_code == 404
    assert outsider.api().delete(detail).status_code == 404
    assert tenant.api(tenant.sk_live).get(URL).json()["items"] == []
    assert tenant.api(tenant.sk_live).get(detail).status_code == 404
    assert tenant.api().delete(detail).status_code == 204
    assert tenant.api().get(detail).status_code == 404


def test_managing_credentials_needs_admin(tenant: Tenant) -> None:
    key = make_key(tenant.test, "obs", scopes=[S.PROXY_CHAT, S.USAGE_WRITE]).plaintext
    assert tenant.api(key).get(URL).status_code == 403
    answer = tenant.api(key).post(URL, {"provider": "openai", "apiKey": SECRET}, format="json")
    assert answer.status_code == 403
    assert answer.json()["error"]["requiredScope"] == "admin"


@pytest.mark.parametrize(
    "body",
    [
        {"provider": "mistral", "apiKey": SECRET},
        {"provider": "openai", "apiKey": "short"},
        {"provider": "openai", "apiKey": "has a space in it"},
        {"provider": "openai", "apiKey": 12345678901},
        {"provider": "openai"},
        {"provider": "openai", "apiKey": SECRET, "baseUrl": "not a url"},
    ],
)
def test_bad_input_is_400(tenant: Tenant, body: dict[str, Any]) -> None:
    answer = tenant.api().post(URL, body, format="json")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"]


def test_keys_rotate_without_losing_a_credential(tenant: Tenant) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    try:
        with override_settings(GATEWAY_CREDENTIAL_KEYS=[old]):
            crypto.reset()
            add(tenant)
        with override_settings(GATEWAY_CREDENTIAL_KEYS=[new, old]):
            crypto.reset()
            assert credentials_rotate() == 1
        with override_settings(GATEWAY_CREDENTIAL_KEYS=[new]):
            crypto.reset()
            stored = ProviderCredential.objects.get()
            assert crypto.decrypt(stored.secret_encrypted) == SECRET
    finally:
        crypto.reset()
