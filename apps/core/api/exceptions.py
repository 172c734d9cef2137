"""The one DRF exception handler: every API error leaves in the same envelope."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

from apps.core.errors import RateLimited, TansoError, Unavailable, is_outage
from apps.core.middleware import current_request_id

logger = logging.getLogger(__name__)


def error_body(
    code: str, message: str, fields: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    error.update(extra)
    error["requestId"] = current_request_id()
    return {"error": error}


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested ValidationError detail -> {"a.b.0.c": ["message", ...]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else "_body"
            path = f"{prefix}.{name}" if prefix else str(name)
            out.update(_flatten(value, path))
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            out[prefix or "_body"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                out.update(_flatten(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        out[prefix or "_body"] = [str(detail)]
    return out


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    headers: dict[str, str] = {}
    if isinstance(exc, TansoError):
        if isinstance(exc, RateLimited | Unavailable):
            headers["Retry-After"] = str(exc.retry_after)
        body = error_body(exc.code, exc.message, exc.fields, **exc.extra)
        return Response(body, status=exc.status, headers=headers)
    if isinstance(exc, Http404):
        return Response(error_body("not_found", "Not found."), status=404)
    if isinstance(exc, PermissionDenied):
        return Response(error_body("forbidden", "You do not have access."), status=403)
    if isinstance(exc, drf.ValidationError):
        return Response(
            error_body("validation_failed", "The request body is not valid.", _flatten(exc.detail)),
            status=400,
        )
    if isinstance(exc, drf.ParseError):
        return Response(error_body("malformed_body", str(exc.detail)), status=400)
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        return Response(
            error_body("unauthorized", str(exc.detail)),
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="api"'},
        )
    if isinstance(exc, drf.Throttled):
        wait = int(exc.wait or 1)  # type: ignore[attr-defined]  # DRF stubs lack Throttled.wait
        return Response(
            error_body("rate_limited", f"Too many requests; retry in {wait} s."),
            status=429,
            headers={"Retry-After": str(max(1, wait))},
        )
    if isinstance(exc, drf.APIException):
        code = {
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            406: "not_acceptable",
            415: "unsupported_media_type",
        }.get(exc.status_code, "error")
        return Response(error_body(code, str(exc.detail)), status=exc.status_code)
    if is_outage(exc):
        return unavailable_response(exc)
    request = context.get("request")
    logger.exception("unhandled API error: %s", getattr(request, "path", "?"), exc_info=exc)
    return Response(error_body("internal_error", "Internal error."), status=500)


def unavailable_response(exc: Exception) -> Response:
    """503 ``unavailable`` with ``Retry-After``: PostgreSQL or Redis is unreachable (the
    request did nothing that was acknowledged; a retry is safe). Logged as a warning
    without a traceback: an outage is not a bug."""
    logger.warning("answering 503 unavailable: %r", exc)
    error = Unavailable()
    return Response(
        error_body(error.code, error.message),
        status=error.status,
        headers={"Retry-After": str(error.retry_after)},
    )
