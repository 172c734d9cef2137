"""The gateway's own refusals, in each provider's error shape (so the SDKs raise their
usual exceptions: 401 AuthenticationError, 403 PermissionDeniedError, ...).

| status | code | when |
|---|---|---|
| 401 | `invalid_api_key` | no key, or an unknown, revoked or expired one |
| 403 | `scope_denied` | the key lacks `proxy.chat` |
| 400 | `invalid_request` | the body is not a JSON object, or a `X-Tanso-*` header is bad |
| 400 | `provider_not_configured` | the environment has no key for this provider |
| 400 | `model_unpriced` | a model without a catalog price, under a hard budget |
| 402 | `budget_exceeded` | too little budget is left for the smallest answer (`Retry-After`) |
| 429 | `rate_limited` | too many invalid keys from this address (`Retry-After`) |
| 502 | `upstream_unreachable` | the provider could not be reached |
| 503 | `unavailable` | PostgreSQL is down and the key cannot be verified |
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    402: "insufficient_quota",
    403: "permission_error",
    429: "rate_limit_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    429: "rate_limit_error",
    502: "api_error",
    503: "overloaded_error",
}


class GatewayError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(provider: str, status: int, code: str, message: str) -> dict[str, Any]:
    if provider == "anthropic":
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message, "code": code}}
    kind = _OPENAI_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def error_response(provider: str, error: GatewayError, extra: dict[str, str]) -> Response:
    body = json.dumps(error_body(provider, error.status, error.code, error.message))
    return Response(
        body,
        status_code=error.status,
        media_type="application/json",
        headers={**error.headers, **extra},
    )
