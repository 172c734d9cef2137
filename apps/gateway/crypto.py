"""Provider secrets at rest: MultiFernet over ``settings.GATEWAY_CREDENTIAL_KEYS``.

The first key encrypts; every key decrypts, so a rotation is: put a new key first, run
``manage.py gateway_rotate_credentials`` (re-encrypts every credential with it), then
remove the old key. Without configured keys, one key is derived from ``SECRET_KEY``
(production refuses to start without a real one).
"""

from __future__ import annotations

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["InvalidToken", "decrypt", "encrypt", "rotate"]


@functools.cache
def _fernet() -> MultiFernet:
    keys = list(settings.GATEWAY_CREDENTIAL_KEYS)
    if not keys:
        digest = hashlib.sha256(b"tanso.gateway.credentials:" + settings.SECRET_KEY.encode())
        keys = [base64.urlsafe_b64encode(digest.digest()).decode()]
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "GATEWAY_CREDENTIAL_KEYS must be Fernet keys (Fernet.generate_key())"
        ) from exc


def reset() -> None:
    """Forget the keys (a test that changes the setting)."""
    _fernet.cache_clear()


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


def rotate(token: str) -> str:
    """``token`` re-encrypted with the first key."""
    return _fernet().rotate(token.encode()).decode()
