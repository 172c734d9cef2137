"""The ASGI process (Procfile ``asgi``): the faces that hold connections open.

* ``/mcp``: the MCP server (apps/mcp, streamable HTTP, stateless; docs/mcp.md);
* ``/gateway/``: reserved for the LLM gateway (an OpenAI- and Anthropic-compatible
  proxy whose streamed answers want an event loop): mount its ASGI app in ``ROUTES``;
* anything else: the Django site (the same one the WSGI server serves), so this one
  port may front everything.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tanso.settings")
django_app = get_asgi_application()  # sets Django up before the apps below import models

from starlette.applications import Starlette  # noqa: E402
from starlette.routing import BaseRoute, Mount, Route  # noqa: E402

from apps.mcp.asgi import PATH as MCP_PATH  # noqa: E402
from apps.mcp.asgi import mcp_app  # noqa: E402


def build_application() -> Starlette:
    mcp, mcp_lifespan = mcp_app()

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with mcp_lifespan():
            yield

    routes: list[BaseRoute] = [
        Route(MCP_PATH, endpoint=mcp),
        # Route("/gateway/...", ...) or Mount("/gateway", app=gateway_app): the LLM gateway.
        Mount("/", app=django_app),  # type: ignore[arg-type]  # Django types its scope loosely
    ]
    return Starlette(routes=routes, lifespan=lifespan)


application: Any = build_application()
