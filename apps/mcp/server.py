"""The MCP server (``tanso-mcp``): the tools of ``tools/``, two resources, and the
middleware that makes every request run as the caller's key.

One :func:`build_server` serves both transports: streamable HTTP (``apps.mcp.asgi``,
stateless: each request carries its key and needs no session) and stdio
(``manage.py mcp --key ...``, one key for the process).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import anyio.to_thread
from mcp.server.context import CallNext, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp_types import ListToolsResult

from apps.apikeys.authentication import authenticate_raw_key
from apps.core.errors import Unauthorized
from apps.mcp import resources
from apps.mcp.calls import Caller, calling_as
from apps.mcp.registry import REGISTRY, visible_names
from apps.mcp.tools import (
    alerts,
    analytics,
    billing,
    catalog,
    credits,
    entitlements,
    events,
    recommendations,
    subscriptions,
)

# The tool modules register their tools on import (``calls.tool``).
TOOL_MODULES = (
    analytics,
    events,
    catalog,
    entitlements,
    subscriptions,
    credits,
    billing,
    recommendations,
    alerts,
)

INSTRUCTIONS = """\
Tanso: cost, revenue and margin of AI usage per customer, feature and model; plans,
entitlements, credits and invoices. Amounts are decimal strings (USD unless a currency
is named). Lists return nextCursor: pass it as cursor for the next page. Tools that
move money or end something answer a preview unless called with confirm: true; show the
preview to the user before confirming. Every result has a dashboardUrl.
"""

SCOPE_KEY = "tanso.mcp.caller"  # where the ASGI layer leaves the authenticated Caller


def _caller_of(ctx: ServerRequestContext[Any, Any], fixed: str | None) -> Caller | None:
    request = ctx.request
    scope = getattr(request, "scope", None)
    if scope is not None:
        caller = scope.get(SCOPE_KEY)
        return caller if isinstance(caller, Caller) else None
    if fixed is not None:
        return Caller(key=authenticate_raw_key(fixed, "stdio"), ip=None)
    return None


def build_server(*, key: str | None = None) -> MCPServer:
    """The server. ``key``: the API key of every request without an HTTP request (stdio,
    in-process clients); over HTTP each request brings its own."""
    server: MCPServer = MCPServer(
        "tanso-mcp",
        title="Tanso",
        instructions=INSTRUCTIONS,
        version="1",
        website_url=None,
    )
    for spec in REGISTRY.values():
        assert spec.fn is not None
        server.add_tool(
            spec.fn,
            name=spec.name,
            title=spec.title,
            annotations=spec.annotations(),
            structured_output=False,  # the tools build their own structuredContent
        )
    resources.register(server)

    async def as_caller(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        try:
            caller = await anyio.to_thread.run_sync(functools.partial(_caller_of, ctx, key))
        except Unauthorized:
            caller = None
        if caller is None:
            if ctx.method in ("tools/list", "tools/call", "resources/read"):
                raise PermissionError("A valid API key is required.")
            return await call_next(ctx)
        with calling_as(caller):
            result = await call_next(ctx)
        if ctx.method == "tools/list":
            # Only the tools this key may call (the chain answers the wire form, a dict).
            names = visible_names(caller.key)
            if isinstance(result, dict):
                tools = [t for t in result.get("tools", []) if t.get("name") in names]
                result = {**result, "tools": tools}
            elif isinstance(result, ListToolsResult):
                tools = [t for t in result.tools if t.name in names]
                result = result.model_copy(update={"tools": tools})
        return result

    server.middleware.append(as_caller)
    return server


def tool_names() -> list[str]:
    return sorted(REGISTRY)


def describe() -> str:
    """The tools and the scope each needs (``manage.py mcp --list``)."""
    rows = [
        {
            "tool": spec.name,
            "scope": spec.scope,
            "customerKeyScope": spec.customer_scope,
            "kind": spec.kind,
            "confirm": spec.confirms,
        }
        for spec in sorted(REGISTRY.values(), key=lambda s: s.name)
    ]
    return json.dumps(rows, indent=2)
