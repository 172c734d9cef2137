"""Typed errors: one base class with a machine code, rendered by one handler.

Services raise these; the DRF exception handler turns them into the envelope
``{"error": {"code", "message", "fields"?, "requestId"}}`` with the status below.
"""

from __future__ import annotations

from typing import Any

import redis
from django.db import InterfaceError, OperationalError
from django.http import Http404


class TansoError(Exception):
    status = 400
    code = "bad_request"
    default_message = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        fields: dict[str, list[str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or self.default_message
        if code:
            self.code = code
        self.fields = fields
        self.extra = extra or {}
        super().__init__(self.message)


class ValidationFailed(TansoError):
    status = 400
    code = "validation_failed"
    default_message = "The request body is not valid."


class InvalidQuery(ValidationFailed):
    """A 400 ``validation_failed`` about the query string: not the body, so not worded so."""

    default_message = "A query parameter is not valid."


class Unauthorized(TansoError):
    status = 401
    code = "unauthorized"
    default_message = "A valid API key is required."


class Forbidden(TansoError):
    status = 403
    code = "forbidden"
    default_message = "You do not have access to this resource."


class ScopeDenied(Forbidden):
    code = "scope_denied"

    def __init__(self, scope: str) -> None:
        super().__init__(f"This key lacks the '{scope}' scope.", extra={"requiredScope": scope})


class NotFound(TansoError, Http404):
    """Also an Http404, so dashboard views that call the same lookups get a 404 page."""

    status = 404
    code = "not_found"
    default_message = "Not found."


class Conflict(TansoError):
    status = 409
    code = "conflict"
    default_message = "The request conflicts with the current state."


class PayloadTooLarge(TansoError):
    status = 413
    code = "payload_too_large"
    default_message = "The request is too large."


class RateLimited(TansoError):
    status = 429
    code = "rate_limited"
    default_message = "Too many requests."

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(message or f"Too many requests; retry in {self.retry_after} s.")


class Unavailable(TansoError):
    """PostgreSQL or Redis cannot be reached right now; retry shortly. Nothing was
    acknowledged: what a request wrote may or may not have committed (the connection can
    drop after the commit), so retries rely on idempotency keys."""

    status = 503
    code = "unavailable"
    default_message = (
        "The service cannot reach its data right now; retry shortly (with the same"
        " idempotency keys)."
    )
    retry_after = 2


# What a data store that is down, restarting or hung raises (psycopg's OperationalError
# covers refused and dropped connections, "the database system is starting up" and
# serialization or deadlock aborts: all of them pass on a retry), not a wrong query.
_OUTAGES: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    redis.ConnectionError,
    redis.TimeoutError,
)


def is_outage(exc: BaseException | None) -> bool:
    """Whether ``exc`` says a data store is unreachable (answer 503 ``unavailable``, or
    fail closed), rather than a bug (500)."""
    return isinstance(exc, _OUTAGES)
