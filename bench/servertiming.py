"""A WSGI wrapper for the benchmarks: each answer carries ``Server-Timing: app;dur=<ms>``,
the time the application took inside the worker (request in, response out; the
socket and the server's HTTP parsing excluded), so "server time" is measured, not guessed
from client latency on a busy machine.

    BENCH_WSGI=bench.servertiming:application python -m bench ...
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from tanso.wsgi import application as _app


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    started = time.perf_counter()
    captured: dict[str, Any] = {}

    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["args"] = (status, headers, exc_info)
        return lambda data: None  # the legacy write() callable is not used by Django

    result = _app(environ, capture)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()  # Django's request_finished (connection upkeep)
    status, headers, exc_info = captured["args"]
    elapsed = (time.perf_counter() - started) * 1000
    headers = [*headers, ("Server-Timing", f"app;dur={elapsed:.3f}")]
    start_response(status, headers, exc_info)
    return [body]
