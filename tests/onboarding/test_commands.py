"""Scripting: manage.py bootstrap, create_api_key and load_demo."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.accounts.models import Environment, Organization
from apps.apikeys.models import ApiKey
from apps.demo.services import DEMO_KEYS

pytestmark = pytest.mark.django_db


def run(*args: str) -> dict:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return json.loads(out.getvalue())


def works(key: str) -> bool:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api.get("/api/sdk-keys/me").status_code == 200


def test_bootstrap_creates_everything_once():
    first = run(
        "bootstrap", "--email", "ops@acme.io", "--org", "Acme", "--password", "pw-1234-abcd-xyz"
    )
    assert first["created"] is True
    assert set(first["keys"]) == {f"{k}_{e}" for k in ("sk", "obs", "ck") for e in ("test", "live")}
    assert first["keys"]["sk_live"]["key"].startswith("sk_live_")
    assert first["keys"]["ck_test"]["key"].startswith("ck_test_")
    assert all(works(entry["key"]) for entry in first["keys"].values())
    org = Organization.objects.get(name="Acme")
    assert Environment.objects.filter(organization=org).count() == 2

    again = run("bootstrap", "--email", "OPS@acme.io", "--org", "Acme")
    assert again["created"] is False
    assert Organization.objects.filter(name="Acme").count() == 1
    assert ApiKey.objects.filter(environment__organization=org).count() == 6
    assert {k: v["id"] for k, v in again["keys"].items()} == {
        k: v["id"] for k, v in first["keys"].items()
    }
    assert all(v["key"] == "" for v in again["keys"].values())


def test_create_api_key_prints_one_working_key():
    run("bootstrap", "--email", "ops@acme.io", "--org", "Acme")
    org = Organization.objects.get(name="Acme")
    body = run(
        "create_api_key",
        "--org",
        org.slug,
        "--env",
        "live",
        "--kind",
        "obs",
        "--scopes",
        "events.write",
        "usage.read",
    )
    assert body["key"].startswith("obs_") and body["environment"] == "live"
    assert body["scopes"] == ["events.write", "usage.read"]
    assert works(body["key"])
    ck = run(
        "create_api_key", "--org", "Acme", "--env", "test", "--kind", "ck", "--customer", "cus_demo"
    )
    assert ck["key"].startswith("ck_test_")


def test_create_api_key_errors_are_clear():
    run("bootstrap", "--email", "ops@acme.io", "--org", "Acme")
    with pytest.raises(CommandError, match="no single organization"):
        call_command("create_api_key", "--org", "Nope", "--env", "test", "--kind", "sk")
    with pytest.raises(CommandError, match="no customer"):
        call_command(
            "create_api_key", "--org", "Acme", "--env", "test", "--kind", "ck", "--customer", "x"
        )
    with pytest.raises(CommandError, match="scope"):
        call_command(
            "create_api_key", "--org", "Acme", "--env", "test", "--kind", "obs", "--scopes", "root"
        )


def test_load_demo_is_idempotent_and_its_keys_work():
    out = io.StringIO()
    call_command("load_demo", stdout=out)
    call_command("load_demo", stdout=io.StringIO())
    text = out.getvalue()
    assert "demo@tanso.local" in text and DEMO_KEYS["sk_test"] in text
    assert ApiKey.objects.filter(name__startswith="Demo").count() == 3
    assert all(works(key) for key in DEMO_KEYS.values())
