"""The ASGI process (tanso.asgi) as a live server on loopback, and MCP client helpers.

The server runs in a thread of the test process (uvicorn), so it reads the test
database and this worker's Redis; tests using it commit their data (transaction=True).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AsgiServer:
    """tanso.asgi's application under uvicorn on 127.0.0.1:port; stop() and start() again
    on the same port make a restart."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from tanso.asgi import build_application

        config = uvicorn.Config(
            build_application(), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the ASGI server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=20)


@pytest.fixture
def asgi_server(transactional_db: Any) -> Iterator[AsgiServer]:
    server = AsgiServer(free_port())
    server.start()
    yield server
    server.stop()


def http_client(key: str | None) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx2.AsyncClient(headers=headers, timeout=30)


def over_http(server: AsgiServer, key: str, body: Callable[[Client], Awaitable[Any]]) -> Any:
    """Run ``body`` with an MCP client connected over HTTP as ``key``."""

    async def main() -> Any:
        async with http_client(key) as http:
            transport = streamable_http_client(f"{server.url}/mcp", http_client=http)
            async with Client(transport, cache=None) as client:
                return await body(client)

    return anyio.run(main)


def in_process(key: str, body: Callable[[Client], Awaitable[Any]]) -> Any:
    """Run ``body`` with an MCP client connected in process to a server running as
    ``key`` (as the stdio transport does)."""
    from apps.mcp.server import build_server

    async def main() -> Any:
        async with Client(build_server(key=key), cache=None) as client:
            return await body(client)

    return anyio.run(main)
