"""Requests made the way a WSGI server makes them, through ``tanso.wsgi.application``:
the path the entitlement check's fast path and the API middleware chain take, which
Django's test client (it calls the handler below them) does not."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from typing import Any

from django.core.signals import request_finished, request_started
from django.db import close_old_connections


@contextlib.contextmanager
def django_test_connections() -> Iterator[None]:
    """As Django's test client does around a request: the request signals must not close
    the test's database connection (it holds the test's transaction)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def wsgi_call(
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    query: str = "",
) -> tuple[int, dict[str, list[str]], bytes]:
    """One request through tanso.wsgi.application: its status, its headers (lower-case
    names, each with its values in order) and its body."""
    from tanso.wsgi import application

    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "testserver",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
    captured: dict[str, Any] = {}

    def start_response(status: str, response_headers: list, exc: Any = None) -> None:
        captured["status"], captured["headers"] = status, response_headers

    with django_test_connections():
        result = application(environ, start_response)
        content = b"".join(result)
        getattr(result, "close", lambda: None)()
    names: dict[str, list[str]] = {}
    for name, value in captured["headers"]:
        names.setdefault(name.lower(), []).append(value)
    return int(captured["status"].split()[0]), names, content
