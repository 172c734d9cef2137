"""The SDK's tests run the package installed from its built wheel, against the live
test server (and, for metering, the official OpenAI and Anthropic SDKs talking to the
fake provider on loopback)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx2
import pytest

from tests.conftest import Tenant, make_tenant
from tests.events.conftest import CATALOG
from tests.fakeprovider import FakeProvider

SDK_DIR = Path(__file__).resolve().parents[2] / "sdk" / "python"


@pytest.fixture(scope="session")
def sdk_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package built as a wheel, as CI and a user's ``pip install ./sdk/python`` do."""
    out = tmp_path_factory.mktemp("sdk-dist")
    # Built from a copy: a build writes build/ and *.egg-info beside its sources, and
    # parallel test workers must not build in the same place.
    source = out / "source"
    shutil.copytree(SDK_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(source)],
        check=True,
    )  # fmt: skip
    (wheel,) = out.glob("tansohq-*.whl")
    return wheel


@pytest.fixture(scope="session")
def tansohq(sdk_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """``import tansohq`` from the wheel installed into a directory of its own (its one
    dependency, httpx2, is the project's too)."""
    site = tmp_path_factory.mktemp("sdk-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
         str(sdk_wheel)],
        check=True,
    )  # fmt: skip
    sys.path.insert(0, str(site))
    import tansohq as module

    assert Path(module.__file__).is_relative_to(site), module.__file__
    return module


@dataclass
class Gate:
    """A front for the live server that can be taken down (503 ``unavailable``), refuse
    keys (401) or lose an answer after forwarding it, and that records every event
    idempotency key it forwarded and every request's ``Idempotency-Key``."""

    target: str
    mode: str = "up"  # up | down | unauthorized | lose-answer-once
    forwarded_event_keys: list[str] = field(default_factory=list)
    request_keys: list[str | None] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self.lock:
            mode = self.mode
            if mode == "lose-answer-once":
                self.mode = "up"
        if mode in {"down", "unauthorized"}:
            with self.lock:
                self.refused += 1
            status = 503 if mode == "down" else 401
            code = "unavailable" if mode == "down" else "invalid_key"
            answer = json.dumps({"error": {"code": code, "message": code}}).encode()
            self._send(handler, status, answer, {"Retry-After": "1"} if status == 503 else {})
            return
        headers = {
            name: value
            for name, value in handler.headers.items()
            if name.lower() not in {"host", "content-length", "connection"}
        }
        with self.lock:
            self.request_keys.append(handler.headers.get("Idempotency-Key"))
            if handler.path.startswith("/api/events/ingest") and body:
                self.forwarded_event_keys.extend(
                    e["idempotencyKey"] for e in json.loads(body)["events"]
                )
        response = httpx2.request(
            method, self.target + handler.path, content=body, headers=headers, timeout=30
        )
        if mode == "lose-answer-once":
            self._send(handler, 503, b'{"error": {"code": "unavailable", "message": "lost"}}', {})
            return
        content_type = response.headers.get("Content-Type", "application/json")
        self._send(handler, response.status_code, response.content, {"Content-Type": content_type})

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


@pytest.fixture
def gate(live_server: Any) -> Iterator[Gate]:
    front = Gate(target=live_server.url)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            front.handle(self, "GET")

        def do_POST(self) -> None:
            front.handle(self, "POST")

        def do_PATCH(self) -> None:
            front.handle(self, "PATCH")

        def do_DELETE(self) -> None:
            front.handle(self, "DELETE")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    front.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield front
    server.shutdown()
    server.server_close()


@pytest.fixture
def acme(transactional_db: Any) -> Tenant:
    return make_tenant("Acme")


@pytest.fixture
def catalog_loaded(transactional_db: Any, tmp_path: Path) -> None:
    from apps.core import memo
    from apps.pricing.services import catalog_sync

    path = tmp_path / "prices.json"
    path.write_text(json.dumps(CATALOG))
    catalog_sync(source=str(path))
    memo.clear_all()


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider
