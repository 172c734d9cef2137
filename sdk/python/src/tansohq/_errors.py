"""The errors a Tanso call raises: one class per HTTP status family, all under TansoError."""

from __future__ import annotations

from typing import Any


class TansoError(Exception):
    """Base of every error this package raises."""


class APIConnectionError(TansoError):
    """The server could not be reached (refused, reset, timed out) after every retry."""


class APIStatusError(TansoError):
    """The server answered with an error status; ``code`` is the envelope's error code."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        fields: dict[str, list[str]] | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.fields = fields or {}
        self.request_id = request_id
        self.body = body

    def __str__(self) -> str:
        parts = [f"{self.status_code}"]
        if self.code:
            parts.append(self.code)
        parts.append(self.message)
        if self.fields:
            parts.append(str(self.fields))
        return " ".join(parts)


class BadRequestError(APIStatusError):
    """400: the request is not valid (``fields`` says which part)."""


class AuthenticationError(APIStatusError):
    """401: the key is missing, unknown, revoked or expired."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this (a scope it lacks, another customer's data)."""


class NotFoundError(APIStatusError):
    """404: no such object in the key's environment."""


class ConflictError(APIStatusError):
    """409: a duplicate event, an idempotency key reused for another request, a depleted pool..."""

    @property
    def is_duplicate(self) -> bool:
        return self.code == "duplicate_event"

    @property
    def is_idempotency_conflict(self) -> bool:
        return self.code in {"idempotency_conflict", "idempotency_in_progress"}


class PayloadTooLargeError(APIStatusError):
    """413: the body (or the batch) is over the server's limit."""


class RateLimitError(APIStatusError):
    """429: too many calls; ``retry_after`` is the server's wait in seconds (or None)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class InternalServerError(APIStatusError):
    """5xx: the server failed or is briefly unavailable (503 ``unavailable``)."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
}


def error_for(status: int, body: Any, retry_after: float | None) -> APIStatusError:
    """The exception for an error answer, from the documented envelope when there is one."""
    envelope = body.get("error") if isinstance(body, dict) else None
    if isinstance(envelope, dict):
        message = str(envelope.get("message") or f"HTTP {status}")
        code = envelope.get("code") if isinstance(envelope.get("code"), str) else None
        fields = envelope.get("fields") if isinstance(envelope.get("fields"), dict) else None
        request_id = envelope.get("requestId")
    else:
        message, code, fields, request_id = f"HTTP {status}", None, None, None
    kwargs: dict[str, Any] = {
        "status_code": status,
        "code": code,
        "fields": fields,
        "request_id": request_id if isinstance(request_id, str) else None,
        "body": body,
    }
    if status == 429:
        return RateLimitError(message, retry_after=retry_after, **kwargs)
    if status >= 500:
        return InternalServerError(message, **kwargs)
    return _BY_STATUS.get(status, APIStatusError)(message, **kwargs)
