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


def request_key(request: Request) -> ApiKey:
    """The key ``ApiKeyAuthentication`` put on ``request.auth``: an API view that
    ``HasScope`` let in has one (``public`` views may not)."""
    key = request.auth
    assert isinstance(key, ApiKey), "request.auth is not an API key"
    return key


def request_key_or_none(request: Request) -> ApiKey | None:
    """``request.auth``: the key, or None when the request carries none."""
    key = request.auth
    assert key is None or isinstance(key, ApiKey), "request.auth is not an API key"
    return key


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[None, ApiKey] | None:
        key = key_for_request(request._request)
        if key is None:
            return None
        return (None, key)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
