"""DRF authentication: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from django.conf import settings
from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from apps.core.errors import RateLimited, Unauthorized
from apps.core.memo import LocalCache
from apps.core.middleware import client_ip
from apps.core.ratelimit import LimiterUnavailable, local_sliding_hit, sliding_hit
from apps.core.redis import global_key

from .models import ApiKey
from .services import authenticate_key, known_recently

if TYPE_CHECKING:
    from apps.accounts.models import Environment


class TooManyFailedAuthentications(RateLimited, Unauthorized):
    """429 ``rate_limited``; also an ``Unauthorized``, so that whoever treats a bad key
    as "no key" (the idempotency middleware) lets the view answer it."""


_FAILURE_WINDOW = 60  # seconds; settings.API_AUTH_FAILURES_PER_MINUTE failures per IP
# Client IPs this process refuses unknown keys from without a query, until the entry
# expires: the IP went over the limit (counted across processes in Redis).
_blocked: LocalCache[str, bool] = LocalCache("apikeys.blocked_ips", max_entries=10_000)


def _too_many(retry_after: int) -> TooManyFailedAuthentications:
    return TooManyFailedAuthentications(
        retry_after,
        f"Too many requests with invalid API keys from this address; "
        f"retry in {max(1, retry_after)} s.",
    )


def _count_failure(ip: str) -> int | None:
    """Count one failed authentication of ``ip``; seconds to wait when over the limit.

    Redis unavailable: counted per process (the request is refused with 401 either
    way; the count keeps a flood of random keys from reaching the database).
    """
    key = global_key("auth-fail-ip", ip)
    limit = settings.API_AUTH_FAILURES_PER_MINUTE
    try:
        wait = sliding_hit(key, limit, _FAILURE_WINDOW)
    except LimiterUnavailable:
        wait = local_sliding_hit(key, limit, _FAILURE_WINDOW)
    if wait is not None:
        _blocked.set(ip, True, ttl=wait)
    return wait


def _authenticate(raw: str, ip: str) -> ApiKey:
    blocked = _blocked.entry(ip)
    now = time.monotonic()
    # A key this process saw valid recently is still checked: a client sharing the
    # address (a NAT, a proxy) with the one sending bad keys keeps working.
    if blocked is not None and blocked[1] > now and not known_recently(raw):
        raise _too_many(int(blocked[1] - now) + 1)
    try:
        return authenticate_key(raw)
    except Unauthorized:
        wait = _count_failure(ip)
        if wait is not None:
            raise _too_many(wait) from None
        raise


def authenticate_raw_key(raw: str, ip: str) -> ApiKey:
    """The key for ``raw`` presented from ``ip``, checked as an API request's is (a failure
    counts against the address's limit of failed authentications): for the faces that do
    not go through DRF (the MCP server)."""
    return _authenticate(raw, ip)


def raw_key_from(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    value = request.headers.get("X-API-Key", "").strip()
    return value or None


def key_for_request(request: HttpRequest) -> ApiKey | None:
    """The key a request carries, checked once and remembered on the request (and so
    is its failure: a failed key is counted once against the client IP's limit of
    failed authentications, ``API_AUTH_FAILURES_PER_MINUTE``)."""
    failed = getattr(request, "_tanso_api_key_error", None)
    if failed is not None:
        raise failed
    cached = getattr(request, "_tanso_api_key", False)
    if cached is not False:
        return cached  # type: ignore[return-value]
    raw = raw_key_from(request)
    try:
        key = _authenticate(raw, client_ip(request)) if raw else None
    except Unauthorized as exc:
        request._tanso_api_key_error = exc  # type: ignore[attr-defined]
        raise
    request._tanso_api_key = key  # type: ignore[attr-defined]
    return key


def request_key(request: Request) -> ApiKey:
    """The key ``ApiKeyAuthentication`` put on ``request.auth``: an API view that
    ``HasScope`` let in has one (``public`` views may not)."""
    key = request.auth
    assert isinstance(key, ApiKey), "request.auth is not an API key"
    return key


def environment_of(request: Request) -> Environment:
    """The calling key's environment: the tenant every lookup of an API view is scoped to."""
    return request_key(request).environment


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
