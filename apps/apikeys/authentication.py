"""DRF authentication: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""

from __future__ import annotations

from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from .models import ApiKey
from .services import authenticate_key


def raw_key_from(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    value = request.headers.get("X-API-Key", "").strip()
    return value or None


def key_for_request(request: HttpRequest) -> ApiKey | None:
    """The key a request carries, checked once and remembered on the request."""
    cached = getattr(request, "_tanso_api_key", False)
    if cached is not False:
        return cached  # type: ignore[return-value]
    raw = raw_key_from(request)
    key = authenticate_key(raw) if raw else None
    request._tanso_api_key = key  # type: ignore[attr-defined]
    return key


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[None, ApiKey] | None:
        key = key_for_request(request._request)
        if key is None:
            return None
        return (None, key)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
