"""``/mcp`` over streamable HTTP: stateless, JSON answers, every request authenticated.

A request without a key, or with an unknown, revoked or expired one, is answered HTTP
401 in the API's error envelope before the MCP layer sees it (429 past the limit of
failed authentications per address, as on the REST API). A valid key rides on the ASGI
scope to the server's middleware (``server.SCOPE_KEY``), which runs the request as it.

Stateless: the server keeps no session, so any process can answer any request and a
restart loses nothing (clients of the 2026-07-28 revision send no session at all; older
clients' initialize handshake is answered per request).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from django.conf import settings
from django.db import close_old_connections
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from apps.apikeys.authentication import authenticate_raw_key
from apps.core.api.exceptions import error_body
from apps.core.errors import RateLimited, TansoError, Unavailable, is_outage
from apps.mcp.calls import Caller
from apps.mcp.server import SCOPE_KEY, build_server

PATH = "/mcp"


def _raw_key(headers: dict[bytes, bytes]) -> str | None:
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    value = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    return value or None


def _client_ip(scope: Scope, headers: dict[bytes, bytes]) -> str:
    """As apps.core.middleware.client_ip: the peer, or behind a trusted proxy the last
    X-Forwarded-For entry."""
    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = headers.get(b"x-forwarded-for", b"").decode("latin-1")
        if forwarded:
            return forwarded.rsplit(",", 1)[-1].strip() or "unknown"
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: list[Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _authenticate(raw: str, ip: str) -> Caller:
    close_old_connections()
    try:
        return Caller(key=authenticate_raw_key(raw, ip), ip=None if ip == "unknown" else ip)
    finally:
        close_old_connections()


class KeyRequired:
    """Answers 401 / 429 / 503 itself; passes an authenticated request on to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = _raw_key(headers)
        challenge = [(b"www-authenticate", b'Bearer realm="api"')]
        if raw is None:
            body = error_body(
                "unauthorized", "An API key is required (Authorization: Bearer <key>)."
            )
            await _send_json(send, 401, body, challenge)
            return
        try:
            caller = await anyio.to_thread.run_sync(_authenticate, raw, _client_ip(scope, headers))
        except TansoError as exc:
            extra: list[Any] = []
            if isinstance(exc, RateLimited | Unavailable):
                extra.append((b"retry-after", str(exc.retry_after).encode()))
            if exc.status == 401:
                extra += challenge
            body = error_body(exc.code, exc.message, exc.fields, **exc.extra)
            await _send_json(send, exc.status, body, extra)
            return
        except Exception as exc:
            if not is_outage(exc):
                raise
            error = Unavailable()
            body = error_body(error.code, error.message)
            await _send_json(send, 503, body, [(b"retry-after", str(error.retry_after).encode())])
            return
        scope = {**scope, SCOPE_KEY: caller}
        await self.app(scope, receive, send)


def _transport_security() -> TransportSecuritySettings:
    """DNS-rebinding protection from Django's ALLOWED_HOSTS and SITE_URL ("*" turns it off,
    as it lets any host in Django too)."""
    hosts = list(settings.ALLOWED_HOSTS)
    if "*" in hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    allowed_hosts = [pattern for host in hosts for pattern in (host, f"{host}:*")]
    origins = [settings.SITE_URL]
    origins += [f"{scheme}://{host}:*" for host in hosts for scheme in ("http", "https")]
    origins += [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(allowed_hosts=allowed_hosts, allowed_origins=origins)


def mcp_app(server: MCPServer | None = None) -> tuple[ASGIApp, Any]:
    """The ``/mcp`` ASGI app and the lifespan context its session manager needs."""
    server = server or build_server()
    app = server.streamable_http_app(
        streamable_http_path=PATH,
        stateless_http=True,
        json_response=True,
        transport_security=_transport_security(),
    )

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    return KeyRequired(app), lifespan
