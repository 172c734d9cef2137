"""How one tool call runs: the caller's key, its scope and rate limit, the audit row,
the idempotency record, the dry-run preview, and the answer's shape.

Every tool is a plain function decorated with :func:`tool`. The decorator records the
tool in the registry (``registry.py``) with the scopes it needs, and wraps it so that a
call, in the worker thread the SDK runs sync tools in:

1. finds the caller's key (set for this request by the server's middleware, from the
   HTTP request's ``Authorization: Bearer`` / ``X-API-Key`` or the stdio ``--key``);
2. refuses a tool the key's scopes do not allow (the same rule as the REST route it
   mirrors) and counts the call against the key's rate limit
   (``API_RATE_LIMIT_PER_SECOND``, the same counter as the REST API's);
3. with an ``idempotencyKey``, claims it as ``Idempotency-Key`` does on the REST API
   (same key and arguments within 24 h replay the first answer; other arguments are
   ``idempotency_conflict``);
4. runs the tool, turning a ``TansoError`` / DRF error into the documented error envelope;
5. writes one audit row (``mcp.tool_call``: key, tool, arguments hash, outcome).

Tools reach data through the same selectors, services and renderings as the API views,
and where a view already assembles an answer from them, by calling that view's handler
in process with a request object that carries the caller's key (:func:`call_view`): no
HTTP, and the answer is the REST answer byte for byte.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.http import HttpRequest, HttpResponse, QueryDict
from mcp_types import CallToolResult, TextContent
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.audit import Actor, audit_change
from apps.apikeys.authentication import ApiKeyAuthentication
from apps.apikeys.idempotency import _Replay, idempotency_begin, idempotency_finish
from apps.apikeys.models import ApiKey
from apps.core.api.exceptions import exception_handler
from apps.core.api.renderers import dumps
from apps.core.errors import Forbidden, RateLimited, ScopeDenied, TansoError
from apps.core.ratelimit import hit
from apps.core.redis import env_key
from apps.mcp.registry import REGISTRY, ToolSpec, allowed

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who is calling: the authenticated key and the client's address."""

    key: ApiKey
    ip: str | None = None

    @property
    def environment(self) -> Any:
        return self.key.environment

    @property
    def pinned_reference(self) -> str | None:
        """The customer a ``ck_`` key is pinned to, else None."""
        if self.key.kind == ApiKey.Kind.CUSTOMER and self.key.customer is not None:
            return str(self.key.customer.reference_id)
        return None

    def actor(self) -> Actor:
        return Actor(api_key_id=self.key.pk, ip=self.ip)


_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("mcp_caller", default=None)


@contextmanager
def calling_as(caller: Caller) -> Iterator[None]:
    """Run the MCP request handled inside as ``caller`` (the SDK copies the context into
    the worker thread a sync tool runs in)."""
    token = _caller.set(caller)
    try:
        yield
    finally:
        _caller.reset(token)


def current_caller() -> Caller:
    caller = _caller.get()
    if caller is None:
        raise TansoError("No API key for this call.", code="unauthorized")
    return caller


# --- answers ---------------------------------------------------------------------------


class ToolAnswer:
    """A tool's answer: the structured object, a short text rendering, the dashboard page."""

    def __init__(self, data: dict[str, Any], text: str, link: str = "/dashboard/") -> None:
        self.data = data
        self.text = text
        self.link = link


def dashboard_url(path: str) -> str:
    return settings.SITE_URL + path


def _result(payload: dict[str, Any], text: str, *, error: bool = False) -> CallToolResult:
    # The JSON goes through the project's encoder: Decimals stay exact strings.
    structured = json.loads(dumps(payload))
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=structured,
        is_error=error,
    )


def error_payload(exc: Exception) -> tuple[dict[str, Any], int]:
    """The REST API's error envelope (and status) for ``exc``."""
    response = exception_handler(exc, {})
    if response is None:  # pragma: no cover - the handler answers every exception
        raise exc
    body = dict(response.data or {})
    retry_after = response.get("Retry-After")
    if retry_after is not None:  # a header over HTTP; a tool result has none
        body["error"] = {**body["error"], "retryAfter": int(retry_after)}
    return body, response.status_code


def _arguments_hash(name: str, arguments: dict[str, Any]) -> str:
    canonical = json.dumps(arguments, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(f"{name}\n{canonical}".encode()).hexdigest()


def _audit(caller: Caller, spec: ToolSpec, arguments: dict[str, Any], outcome: str) -> None:
    try:
        audit_change(
            environment=caller.environment,
            action="mcp.tool_call",
            target_type="mcp_tool",
            target_id=spec.name,
            actor=caller.actor(),
            detail={
                "keyPrefix": caller.key.prefix,
                "argumentsHash": _arguments_hash(spec.name, arguments),
                "outcome": outcome,
            },
        )
    except Exception:
        # The answer is already decided; an audit write that fails is logged, not hidden.
        logger.exception("mcp: audit row for %s not written", spec.name)


def _check_access(caller: Caller, spec: ToolSpec) -> None:
    key = caller.key
    if not allowed(spec, key):
        needed = spec.customer_scope if key.kind == ApiKey.Kind.CUSTOMER else spec.scope
        if key.kind == ApiKey.Kind.CUSTOMER and spec.customer_scope is None:
            raise Forbidden("Customer keys cannot call this tool.")
        raise ScopeDenied(needed or "")
    wait = hit(env_key(key.environment_id, "rl", key.pk), settings.API_RATE_LIMIT_PER_SECOND, 1)
    if wait is not None:
        raise RateLimited(wait)


def _idempotency_request(spec: ToolSpec, arguments: dict[str, Any]) -> HttpRequest:
    """The "request" an idempotency record is made for: the tool and its arguments."""
    request = HttpRequest()
    request.method = "POST"
    request.path = f"/mcp/tools/{spec.name}"
    canonical = json.dumps(arguments, sort_keys=True, default=str, separators=(",", ":"))
    request._body = canonical.encode()
    return request


def _run(
    spec: ToolSpec, fn: Callable[..., ToolAnswer], kwargs: dict[str, Any]
) -> tuple[CallToolResult, str]:
    """Run ``fn`` for the current caller; the result and the audit outcome."""
    caller = current_caller()
    idem_key = kwargs.pop("idempotencyKey", None) if spec.writes else None
    arguments = {k: v for k, v in kwargs.items() if v is not None}
    record_id: int | None = None
    try:
        _check_access(caller, spec)
        if idem_key is not None:
            record_id = idempotency_begin(
                _idempotency_request(spec, arguments), caller.key, idem_key
            )
        answer = fn(**kwargs)
    except _Replay as replay:
        body = json.loads(bytes(replay.response.content or b"{}"))
        failed = "error" in body and len(body) == 1
        text = "Replayed the answer of the first call with this idempotencyKey."
        return _result(body, text, error=failed), "replayed"
    except Exception as exc:
        body, status = error_payload(exc)
        if record_id is not None:
            idempotency_finish(
                record_id,
                HttpResponse(dumps(body), status=status, content_type="application/json")
                if status < 500
                else None,
            )
        error = body.get("error", {})
        text = f"Error {error.get('code')}: {error.get('message')}"
        return _result(body, text, error=True), f"error:{error.get('code')}"
    payload = {**answer.data, "dashboardUrl": dashboard_url(answer.link)}
    if record_id is not None:
        idempotency_finish(
            record_id, HttpResponse(dumps(payload), status=200, content_type="application/json")
        )
    outcome = "preview" if payload.get("preview") is True else "ok"
    return _result(payload, f"{answer.text}\nDashboard: {payload['dashboardUrl']}"), outcome


def tool(spec: ToolSpec) -> Callable[[Callable[..., ToolAnswer]], Callable[..., CallToolResult]]:
    """Register ``fn`` as the tool ``spec`` describes (see the module docstring)."""

    def decorate(fn: Callable[..., ToolAnswer]) -> Callable[..., CallToolResult]:
        @functools.wraps(fn)
        def call(**kwargs: Any) -> CallToolResult:
            if "from" in kwargs:  # a window's start: a Python keyword, so from_ in the tool
                kwargs["from_"] = kwargs.pop("from")
            close_old_connections()
            try:
                caller = current_caller()
                result, outcome = _run(spec, fn, dict(kwargs))
                _audit(caller, spec, {k: v for k, v in kwargs.items() if v is not None}, outcome)
                return result
            finally:
                close_old_connections()

        # The SDK reads the schema from the signature; the answer is built here.
        call.__annotations__ = {**fn.__annotations__, "return": CallToolResult}
        spec.fn = call
        REGISTRY[spec.name] = spec
        return call

    return decorate


# --- reaching the API's views in process --------------------------------------------------


def call_view(
    view_class: type[Any],
    method: str,
    *,
    query: dict[str, Any] | None = None,
    data: Any = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """The answer of ``view_class``'s ``method`` handler for the current caller.

    The handler runs in this thread with a request that carries the caller's key (so it
    sees the key's environment and customer pin exactly as over HTTP); authentication,
    scope and rate limit were checked by the tool. A ``TansoError`` or DRF error raised
    by the handler propagates (the tool's error answer)."""
    caller = current_caller()
    http = HttpRequest()
    http.method = method.upper()
    http.path = "/mcp"
    params = QueryDict(mutable=True)
    for name, value in (query or {}).items():
        if value is not None:
            params[name] = str(value).lower() if isinstance(value, bool) else str(value)
    params._mutable = False
    http.GET = params  # type: ignore[assignment]
    http.META["REMOTE_ADDR"] = caller.ip or "127.0.0.1"
    http._tanso_api_key = caller.key  # type: ignore[attr-defined]  # as key_for_request caches it
    request = Request(http, authenticators=[ApiKeyAuthentication()])
    if data is not None:
        request._full_data = data  # type: ignore[attr-defined]  # DRF's parsed-body slot
    view = view_class()
    view.request, view.args, view.kwargs, view.format_kwarg = request, (), kwargs, None
    view.headers = {}
    response: Response = getattr(view, method.lower())(request, **kwargs)
    # As the API renders it: decimal strings, ISO 8601 times, ids as strings.
    return dict(json.loads(dumps(response.data)))


class _Rollback(Exception):
    pass


def dry_run[T](action: Callable[[], T]) -> T:
    """``action``'s result computed inside a transaction that is rolled back: what the
    change would do, with nothing changed (work queued with ``on_commit`` is dropped)."""
    outcome: list[T] = []
    try:
        with transaction.atomic():
            outcome.append(action())
            raise _Rollback
    except _Rollback:
        pass
    return outcome[0]
