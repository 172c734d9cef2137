"""Tanso for Python: call the Tanso API, and meter OpenAI and Anthropic calls per customer.

import tansohq, openai
tanso = tansohq.Tanso()                      # TANSO_API_KEY, TANSO_BASE_URL
client = tanso.wrap(openai.OpenAI(), customer="cus_123", feature="chat")
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

from ._client import AsyncTanso, Tanso
from ._context import UNASSIGNED, Attribution, attribute
from ._errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    TansoError,
)
from ._version import __version__

C = TypeVar("C")


@functools.cache
def default_client() -> Tanso:
    """The client ``wrap`` uses when given none: built once from the environment."""
    return Tanso()


def wrap(client: C, *, tanso: Tanso | AsyncTanso | None = None, **attribution: Any) -> C:
    """Meter ``client`` in place and return it: ``customer=``, ``feature=``, ``trace=``,
    ``event_name=``, ``meta=`` attribute every call (a call's own ``tanso={...}`` and an
    enclosing :func:`attribute` block say more)."""
    return (tanso or default_client()).wrap(client, **attribution)


__all__ = [
    "UNASSIGNED",
    "APIConnectionError",
    "APIStatusError",
    "AsyncTanso",
    "Attribution",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "Tanso",
    "TansoError",
    "__version__",
    "attribute",
    "default_client",
    "wrap",
]
