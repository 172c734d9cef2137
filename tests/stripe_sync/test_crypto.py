"""Secrets at rest (apps/core/crypto.py): Fernet with TANSO_ENCRYPTION_KEY, or a key
derived from SECRET_KEY; ciphertext of one key does not open with another."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from apps.core import crypto


def test_round_trip_without_the_plaintext_in_the_ciphertext() -> None:
    secret = "sk_test_" + "a1b2c3d4" * 4
    token = crypto.encrypt(secret)
    assert secret not in token and "a1b2c3d4" not in token
    assert token != crypto.encrypt(secret)  # a fresh IV each time
    assert crypto.decrypt(token) == secret


def test_configured_key_and_derived_key_differ(settings: Any) -> None:
    derived = crypto.encrypt("sk_test_secret")
    settings.TANSO_ENCRYPTION_KEY = Fernet.generate_key().decode()
    configured = crypto.encrypt("sk_test_secret")
    assert crypto.decrypt(configured) == "sk_test_secret"
    with pytest.raises(crypto.InvalidToken):
        crypto.decrypt(derived)
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    settings.TANSO_ENCRYPTION_KEY = ""
    with pytest.raises(crypto.InvalidToken):
        crypto.decrypt(derived)


def test_a_malformed_key_fails_loudly(settings: Any) -> None:
    settings.TANSO_ENCRYPTION_KEY = "not-a-fernet-key"
    with pytest.raises(ImproperlyConfigured):
        crypto.encrypt("x")


def test_hint_shows_only_the_last_four() -> None:
    assert crypto.hint("sk_test_abcdefgh1234") == "1234"
    assert crypto.hint("abc") == ""
