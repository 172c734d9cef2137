"""Who is calling and with which provider key: resolved once in a thread, then served
from a short per-process cache, so that the gateway's hot path makes no ORM call.

An entry lives ``APIKEY_CACHE_SECONDS`` (as the API's key cache): a revoked key or a
replaced provider key takes effect within that long in every process (at once in the
one that made the change).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import anyio.to_thread
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from apps.apikeys.authentication import authenticate_raw_key
from apps.apikeys.models import ApiKey
from apps.core.memo import LocalCache

from . import crypto
from .selectors import credential_for, routes_for


@dataclass(frozen=True, slots=True)
class Upstream:
    """The environment's credential for one provider, decrypted (never rendered)."""

    provider: str
    secret: str
    base_url: str

    def __repr__(self) -> str:
        return f"Upstream({self.provider}, {self.base_url or 'default'})"


@dataclass(frozen=True, slots=True)
class Resolved:
    key: ApiKey
    upstream: Upstream | None
    # The reference of the customer a ck_ key is pinned to (it wins over headers).
    pinned_customer: str | None
    # The environment's aliases for the provider: alias -> models tried in order.
    routes: dict[str, tuple[str, ...]]


_resolved: LocalCache[tuple[str, str], Resolved] = LocalCache(
    "gateway.resolved", max_entries=10_000
)


def _load(raw: str, ip: str, provider: str) -> Resolved:
    close_old_connections()
    try:
        key = authenticate_raw_key(raw, ip)
        credential = credential_for(key.environment_id, provider)
        upstream = None
        if credential is not None:
            upstream = Upstream(
                provider=provider,
                secret=crypto.decrypt(credential.secret_encrypted),
                base_url=credential.base_url,
            )
        pinned = key.customer.reference_id if key.customer is not None else None
        routes = routes_for(key.environment_id, provider)
        return Resolved(key=key, upstream=upstream, pinned_customer=pinned, routes=routes)
    finally:
        close_old_connections()


async def resolve(raw: str, ip: str, provider: str) -> Resolved:
    """The key for ``raw`` (Unauthorized when unknown, revoked or expired) and the
    environment's credential for ``provider``."""
    cache_key = (hashlib.sha256(raw.encode()).hexdigest(), provider)
    hit = _resolved.get(cache_key)
    if hit is not None and hit.key.status_at(timezone.now()) == "active":
        return hit
    resolved = await anyio.to_thread.run_sync(_load, raw, ip, provider)
    ttl = max(settings.APIKEY_CACHE_SECONDS, 0)
    if ttl:
        _resolved.set(cache_key, resolved, ttl=ttl)
    return resolved


def forget_all() -> None:
    """Forget every resolved key and credential (a credential changed)."""
    _resolved.clear()
