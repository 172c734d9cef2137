"""``/gateway``: the OpenAI- and Anthropic-compatible proxy (docs/gateway.md).

Served by the ASGI process (tanso.asgi). Async end to end: the caller's key and the
environment's provider key come from a per-process cache (apps.gateway.cache; a thread
only on a miss), each provider has one pooled ``httpx2`` client, and the blocking
work (a budget reservation, the event's write) runs in threads.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx2
from django.db import close_old_connections
from django.utils import timezone
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from apps.apikeys import scopes as S
from apps.core.errors import TansoError, is_outage

from . import budgets, metering, relay
from .cache import Resolved, resolve
from .errors import GatewayError, error_response
from .metering import Attribution, CallRecord, Outcome
from .usage import Collector

DEFAULT_BASE = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
ANTHROPIC_VERSION = "2023-06-01"
# Under a hard budget a call's output is bounded: by the client's max tokens, else this.
DEFAULT_MAX_OUTPUT_TOKENS = 4096
# The smallest answer worth forwarding when the budget is nearly spent.
MIN_OUTPUT_TOKENS = 16
MAX_FIELD = 255
MAX_META_BYTES = 8 * 1024  # the event's meta holds 16 KB, the raw usage included
STREAMING = frozenset({"chat", "responses", "messages"})
# Upstream answers after which the next target of a route is tried (before any byte
# reached the client): timeouts, rate limits, server errors, Anthropic's overload.
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504, 529})

# surface -> (provider, path under the provider's base, the body's max-tokens field)
SURFACES: dict[str, tuple[str, str, str | None]] = {
    "chat": ("openai", "/chat/completions", "max_completion_tokens"),
    "responses": ("openai", "/responses", "max_output_tokens"),
    "embeddings": ("openai", "/embeddings", None),
    "messages": ("anthropic", "/v1/messages", "max_tokens"),
    "count_tokens": ("anthropic", "/v1/messages/count_tokens", None),
}


@dataclass
class Call:
    """One request's state on its way through the gateway."""

    surface: str
    provider: str
    resolved: Resolved
    body: dict[str, Any]
    attribution: Attribution
    received: float
    occurred_at: dt.datetime = field(default_factory=timezone.now)
    reservation: budgets.Reservation | None = None
    changed: bool = False  # the body differs from the client's: re-encode it
    injected_usage: bool = False  # stream_options.include_usage added by the gateway
    outcome: Outcome | None = None
    targets: tuple[str, ...] = ()  # the models to try, in order (an alias's route)
    attempt: int = 1


def _raw_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key", "").strip() or None


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _authorize(request: Request, provider: str) -> Resolved:
    raw = _raw_key(request)
    if raw is None:
        raise GatewayError(401, "invalid_api_key", "A Tanso API key is required.")
    try:
        resolved = await resolve(raw, _client_ip(request), provider)
    except TansoError as exc:
        headers = {"retry-after": str(exc.retry_after)} if hasattr(exc, "retry_after") else {}
        status = exc.status if exc.status in {401, 429, 503} else 401
        code = "invalid_api_key" if status == 401 else exc.code
        raise GatewayError(status, code, exc.message, headers) from None
    except Exception as exc:
        if not is_outage(exc):
            raise
        raise GatewayError(503, "unavailable", "The key cannot be verified now.") from None
    if not resolved.key.has_scope(S.PROXY_CHAT):
        raise GatewayError(403, "scope_denied", "This key lacks the proxy.chat scope.")
    return resolved


def _text(value: str, header: str) -> str:
    if len(value) > MAX_FIELD or not value.isprintable():
        raise GatewayError(400, "invalid_request", f"{header}: at most {MAX_FIELD} characters.")
    return value


def attribution_of(request: Request, pinned: str | None) -> Attribution:
    """The X-Tanso-* headers (X-Tolvyn-End-Customer as an alias of the customer); a key
    pinned to a customer wins over them; untagged calls go to ``unassigned``."""
    headers = request.headers
    customer = headers.get("x-tanso-customer") or headers.get("x-tolvyn-end-customer") or ""
    meta: dict[str, Any] = {}
    if raw_meta := headers.get("x-tanso-meta"):
        if len(raw_meta) > MAX_META_BYTES:
            raise GatewayError(400, "invalid_request", "X-Tanso-Meta: at most 8 KB.")
        try:
            meta = json.loads(raw_meta)
        except ValueError:
            meta = None  # type: ignore[assignment]
        if not isinstance(meta, dict):
            raise GatewayError(400, "invalid_request", "X-Tanso-Meta must be a JSON object.")
    event_key = headers.get("x-tanso-event-key") or f"gw_{uuid.uuid4().hex}"
    return Attribution(
        customer=pinned or _text(customer.strip(), "X-Tanso-Customer") or metering.UNASSIGNED,
        feature=_text(headers.get("x-tanso-feature", "").strip(), "X-Tanso-Feature")
        or metering.UNASSIGNED,
        trace=_text(headers.get("x-tanso-trace", "").strip(), "X-Tanso-Trace"),
        event_key=_text(event_key, "X-Tanso-Event-Key"),
        meta=meta,
    )


def _upstream_headers(request: Request, call: Call) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if relay.forwardable(k)}
    upstream = call.resolved.upstream
    assert upstream is not None
    headers["content-type"] = "application/json"
    if call.provider == "anthropic":
        headers["x-api-key"] = upstream.secret
        headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
    else:
        headers["authorization"] = f"Bearer {upstream.secret}"
    return headers


def _max_tokens(call: Call) -> tuple[str | None, int | None]:
    name = SURFACES[call.surface][2]
    if name is None:
        return None, 0
    if call.surface == "chat" and "max_tokens" in call.body:
        name = "max_tokens"
    value = call.body.get(name)
    asked = value if isinstance(value, int) and not isinstance(value, bool) else None
    return name, asked


def _reserve(call: Call, request_bytes: int) -> None:
    """Hold the call's worst case against the key's budget; lower its max tokens to fit
    the headroom when needed (blocking: run in a thread)."""
    close_old_connections()
    try:
        _reserve_now(call, request_bytes)
    finally:
        close_old_connections()


def _dearest(call: Call, request_bytes: int) -> metering.Quote:
    """The worst case over the call's targets (a fallback may land on any of them)."""
    key, worst_input, worst_output = call.resolved.key, Decimal(0), Decimal(0)
    for model in call.targets:
        quote = metering.quote(
            key=key, model=model, provider=call.provider, input_tokens=request_bytes
        )
        if quote.input_usd is None or quote.per_output_token_usd is None:
            raise GatewayError(
                400,
                "model_unpriced",
                f"No price is known for {model!r}; this key has a hard budget.",
            )
        worst_input = max(worst_input, quote.input_usd)
        worst_output = max(worst_output, quote.per_output_token_usd)
    return metering.Quote(worst_input, worst_output)


def _reserve_now(call: Call, request_bytes: int) -> None:
    key = call.resolved.key
    quote = _dearest(call, request_bytes)
    name, asked = _max_tokens(call)
    cap = asked if asked is not None else DEFAULT_MAX_OUTPUT_TOKENS
    if name is None:
        cap = 0
    least = quote.worst(min(cap, MIN_OUTPUT_TOKENS))
    try:
        reservation = budgets.reserve(key=key, worst_usd=quote.worst(cap), least_usd=least)
    except budgets.BudgetRefused as refused:
        raise _refusal(refused) from None
    call.reservation = reservation
    if name is not None:
        assert quote.input_usd is not None and quote.per_output_token_usd is not None
        fit = budgets.fits(reservation.amount_usd - quote.input_usd, quote.per_output_token_usd)
        if fit < cap or asked is None:
            call.body[name] = min(cap, fit)
            call.changed = True


def _refusal(refused: budgets.BudgetRefused) -> GatewayError:
    headers = {"x-tanso-budget-remaining": str(refused.remaining_usd)}
    if refused.resets_at is not None:
        wait = (refused.resets_at - timezone.now()).total_seconds()
        headers["retry-after"] = str(max(math.ceil(wait), 1))
    return GatewayError(
        402, "budget_exceeded", "This key's budget is spent for the period.", headers
    )


def _prepare(call: Call) -> bool:
    """Adjust the body for metering; whether the client's stream gets a usage chunk
    it did not ask for (OpenAI chat: asked here, removed before the client sees it)."""
    if call.surface != "chat" or not call.body.get("stream"):
        return False
    options = call.body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        return False
    call.body["stream_options"] = {**(options or {}), "include_usage": True}
    return True


async def _finish(call: Call, up: relay.Upcall) -> None:
    """The relay's last step: the call's event, if the provider answered and billed (a
    failed attempt is not billed: the handler tries the next target or releases)."""
    try:
        head = up.head
        billed = head is not None and head.status < 400 and call.surface != "count_tokens"
        if billed and head is not None:
            tokens, estimated = up.collector.tokens()
            record = CallRecord(
                key=call.resolved.key,
                attribution=call.attribution,
                provider=call.provider,
                surface=call.surface,
                model=up.collector.model or str(call.body.get("model") or ""),
                occurred_at=call.occurred_at,
                duration_ms=round((time.perf_counter() - call.received) * 1000),
                status=_status(up),
                upstream_status=head.status,
                tokens=tokens,
                estimated=estimated or not up.complete,
                raw_usage=up.collector.raw,
                reservation=call.reservation,
                attempt=call.attempt,
            )
            call.outcome = await relay.in_thread(metering.record_call_or_log, record)
    finally:
        up.finished.set()


def _status(up: relay.Upcall) -> str:
    if not up.complete:
        return "incomplete"  # cut at the process's bounds, or the provider broke off
    return "client_disconnected" if up.detached else "completed"


def _overhead_ms(call: Call, up: relay.Upcall) -> str:
    total = time.perf_counter() - call.received
    return f"{max(total - up.upstream_seconds, 0) * 1000:.2f}"


def _tanso_headers(call: Call, up: relay.Upcall, *, streamed: bool) -> dict[str, str]:
    headers = {"x-tanso-event-key": call.attribution.event_key}
    outcome = call.outcome
    if outcome is not None and outcome.event_id is not None:
        headers["x-tanso-event-id"] = str(outcome.event_id)
    remaining: Decimal | None = None
    if outcome is not None and outcome.remaining_usd is not None:
        remaining = outcome.remaining_usd
    elif call.reservation is not None:
        remaining = call.reservation.remaining_usd
    if remaining is not None:
        headers["x-tanso-budget-remaining"] = str(remaining)
    if streamed:
        up.upstream_seconds = (up.head.started if up.head else time.perf_counter()) - up.sent_at
    headers["x-tanso-overhead-ms"] = _overhead_ms(call, up)
    return headers


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise GatewayError(400, "invalid_request", "The body must be a JSON object.")
    return body


class Gateway:
    """The routes' handlers and one pooled HTTP client per provider."""

    def __init__(self) -> None:
        self._clients: dict[str, httpx2.AsyncClient] = {}

    def client(self, provider: str) -> httpx2.AsyncClient:
        client = self._clients.get(provider)
        if client is None:
            client = httpx2.AsyncClient(
                timeout=httpx2.Timeout(600.0, connect=10.0),
                limits=httpx2.Limits(max_connections=2000, max_keepalive_connections=500),
                follow_redirects=False,
            )
            self._clients[provider] = client
        return client

    async def aclose(self) -> None:
        await relay.wait_running()
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def proxy(self, request: Request, surface: str) -> Response:
        provider = SURFACES[surface][0]
        received = time.perf_counter()
        try:
            return await self._proxy(request, surface, received)
        except GatewayError as error:
            overhead = f"{(time.perf_counter() - received) * 1000:.2f}"
            return error_response(provider, error, {"x-tanso-overhead-ms": overhead})

    async def _start(self, request: Request, surface: str, received: float) -> Call:
        provider = SURFACES[surface][0]
        resolved = await _authorize(request, provider)
        if resolved.upstream is None:
            raise GatewayError(
                400,
                "provider_not_configured",
                f"This environment has no {provider} key (POST /api/v1/gateway/credentials).",
            )
        raw = await request.body()
        call = Call(
            surface=surface,
            provider=provider,
            resolved=resolved,
            body=_json_body(raw),
            attribution=attribution_of(request, resolved.pinned_customer),
            received=received,
        )
        call.injected_usage = call.changed = _prepare(call)
        model = str(call.body.get("model") or "")
        call.targets = resolved.routes.get(model) or (model,)
        if resolved.key.budget_cents is not None and surface != "count_tokens":
            await relay.in_thread(_reserve, call, len(raw))
        return call

    def _attempt(self, request: Request, call: Call, target: str, raw: bytes) -> relay.Upcall:
        """Start one attempt at ``target`` in its relay task."""
        upstream = call.resolved.upstream
        assert upstream is not None
        if target != call.body.get("model"):
            call.body["model"], call.changed = target, True
        up = relay.Upcall(
            url=(upstream.base_url or DEFAULT_BASE[call.provider]) + SURFACES[call.surface][1],
            headers=_upstream_headers(request, call),
            body=json.dumps(call.body).encode() if call.changed else raw,
            stream=bool(call.body.get("stream")) and call.surface in STREAMING,
            collector=Collector(call.surface, len(raw)),
            drop_usage_chunk=call.injected_usage,
        )

        async def finish(done: relay.Upcall) -> None:
            await _finish(call, done)

        relay.start(up, self.client(call.provider), finish)
        return up

    async def _attempts(self, request: Request, call: Call) -> tuple[relay.Upcall, list[str]]:
        """Try the call's targets in order until one answers other than with a retryable
        failure (before any byte reached the client); the last attempt and the list."""
        raw = await request.body()
        tried: list[str] = []
        for index, target in enumerate(call.targets, start=1):
            call.attempt = index
            up = self._attempt(request, call, target, raw)
            await up.ready.wait()
            status = up.head.status if up.head is not None else None
            tried.append(f"{target}={status or 'unreachable'}")
            if status is not None and status not in RETRYABLE:
                break
        return up, tried

    async def _proxy(self, request: Request, surface: str, received: float) -> Response:
        call = await self._start(request, surface, received)
        up, tried = await self._attempts(request, call)
        head = up.head
        billed = head is not None and head.status < 400
        if not billed and call.reservation is not None:
            await relay.in_thread(metering.release, call.reservation, call.resolved.key)
        attempts = {"x-tanso-attempts": ", ".join(tried)} if len(call.targets) > 1 else {}
        if head is None:
            raise GatewayError(
                502, "upstream_unreachable", f"{call.provider} could not be reached.", attempts
            )
        if up.stream and billed:
            headers = {**dict(head.headers), **_tanso_headers(call, up, streamed=True)}
            return StreamingResponse(
                relay.client_stream(up), status_code=head.status, headers=headers | attempts
            )
        await up.finished.wait()  # the event is written before the answer goes out
        headers = {**dict(head.headers), **_tanso_headers(call, up, streamed=False)}
        return Response(up.answer, status_code=head.status, headers=headers | attempts)

    async def models(self, request: Request) -> Response:
        """``GET /openai/v1/models``: the provider's list, through the environment's key."""
        received = time.perf_counter()
        try:
            resolved = await _authorize(request, "openai")
            if resolved.upstream is None:
                raise GatewayError(400, "provider_not_configured", "No openai key is set.")
        except GatewayError as error:
            return error_response("openai", error, {})
        upstream = resolved.upstream
        url = (upstream.base_url or DEFAULT_BASE["openai"]) + "/models"
        try:
            answer = await self.client("openai").get(
                url, headers={"authorization": f"Bearer {upstream.secret}"}
            )
        except httpx2.HTTPError:
            unreachable = GatewayError(502, "upstream_unreachable", "openai could not be reached.")
            return error_response("openai", unreachable, {})
        overhead = f"{(time.perf_counter() - received) * 1000:.2f}"
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type="application/json",
            headers={"x-tanso-overhead-ms": overhead},
        )


def _route(gateway: Gateway, path: str, surface: str) -> Route:
    async def endpoint(request: Request) -> Response:
        return await gateway.proxy(request, surface)

    return Route(path, endpoint=endpoint, methods=["POST"])


def gateway_app() -> tuple[Starlette, Callable[[], Any]]:
    """The gateway's ASGI app (mount it at ``/gateway``) and its lifespan."""
    gateway = Gateway()
    routes = [
        _route(gateway, "/openai/v1/chat/completions", "chat"),
        _route(gateway, "/openai/v1/responses", "responses"),
        _route(gateway, "/openai/v1/embeddings", "embeddings"),
        Route("/openai/v1/models", endpoint=gateway.models, methods=["GET"]),
        _route(gateway, "/anthropic/v1/messages", "messages"),
        _route(gateway, "/anthropic/v1/messages/count_tokens", "count_tokens"),
    ]

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        try:
            yield
        finally:
            await gateway.aclose()

    return Starlette(routes=routes), lifespan
