"""The one way to talk to Stripe: a ``stripe.StripeClient`` for an environment.

* The key is the environment's own (``StripeConnection``, decrypted here, never logged).
* ``settings.STRIPE_API_BASE`` is the API address (https://api.stripe.com; the tests
  point it at a localstripe peer on 127.0.0.1).
* The SDK retries network failures itself (``max_network_retries``); it sends an
  idempotency key with each retried POST, and we pass our own on every write so a
  retried *task* cannot create twice either: :func:`idempotency_key`.

Call Stripe only from Celery tasks (or a connect/disconnect request, outside any
transaction), never inside a database transaction that other requests wait on.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import stripe
from django.conf import settings

from apps.core import crypto
from apps.core.errors import Conflict
from apps.core.tenancy import scoped

from . import errors

if TYPE_CHECKING:
    from apps.accounts.models import Environment

NETWORK_RETRIES = 2
TIMEOUT_SECONDS = 30
# Stripe's idempotency keys may be up to 255 characters.
_KEY_PART = re.compile(r"[^A-Za-z0-9_.:-]+")


def client_for_key(api_key: str) -> stripe.StripeClient:
    """A client for a raw key (connect validates a key before storing it)."""
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": settings.STRIPE_API_BASE},
        max_network_retries=NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=TIMEOUT_SECONDS),
    )


def api_key_of(environment: Environment | Any) -> str:
    """The environment's decrypted Stripe key; 409 ``stripe_not_connected`` without one."""
    from .models import StripeConnection

    env_id: Any = getattr(environment, "pk", environment)
    row = scoped(StripeConnection, env_id).only("key_encrypted").first()
    if row is None:
        raise Conflict(
            "Stripe is not connected in this environment.", code=errors.STRIPE_NOT_CONNECTED
        )
    return crypto.decrypt(row.key_encrypted)


def stripe_client(environment: Environment | Any) -> stripe.StripeClient:
    """The ``StripeClient`` of an environment (an ``Environment`` or its id)."""
    return client_for_key(api_key_of(environment))


def idempotency_key(*parts: object) -> str:
    """``tanso-`` + the parts joined by ``-``: derived from our object and the action,
    e.g. ``idempotency_key("inv", invoice.pk, "create")`` -> ``tanso-inv-<uuid>-create``."""
    joined = "-".join(_KEY_PART.sub("_", str(part)) for part in parts)
    return f"tanso-{joined}"[:255]


def write_options(*parts: object) -> stripe.RequestOptions:
    """Request options for a write: ``{"idempotency_key": idempotency_key(*parts)}``."""
    return {"idempotency_key": idempotency_key(*parts)}
