"""Secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) from the ``cryptography`` package.

The key is ``settings.TANSO_ENCRYPTION_KEY`` (a Fernet key: urlsafe base64 of 32
bytes); when unset it is derived from ``SECRET_KEY`` (HKDF-SHA256 with a fixed
context), so rotating ``SECRET_KEY`` without setting ``TANSO_ENCRYPTION_KEY``
makes stored secrets unreadable (they must be entered again).
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["InvalidToken", "decrypt", "encrypt", "hint"]


@functools.cache
def _fernet(configured: str, secret_key: str) -> Fernet:
    if configured:
        try:
            return Fernet(configured.encode())
        except ValueError:
            raise ImproperlyConfigured(
                "TANSO_ENCRYPTION_KEY must be a Fernet key (urlsafe base64 of 32 bytes)"
            ) from None
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"tanso-secrets-at-rest-v1"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def _cipher() -> Fernet:
    return _fernet(getattr(settings, "TANSO_ENCRYPTION_KEY", ""), settings.SECRET_KEY)


def encrypt(plaintext: str) -> str:
    """The ciphertext (ASCII, safe to store in a text column)."""
    return _cipher().encrypt(plaintext.encode()).decode("ascii")


def decrypt(ciphertext: str) -> str:
    """Raises :class:`InvalidToken` when the ciphertext was made with another key."""
    return _cipher().decrypt(ciphertext.encode("ascii")).decode()


def hint(secret: str, visible: int = 4) -> str:
    """The only part of a secret ever shown again: its last characters."""
    return secret[-visible:] if len(secret) > visible else ""
