"""Forwarding one call upstream, in a task the client's request cannot cancel.

The relay task sends the request, hands the answer's head and then each server-sent
event to the client's side through a queue, and reads the upstream to its end whatever
the client does: the call's usage comes last, and a client that went away mid-stream
must still be billed for all of it. A detached relay (its client gone) is bounded:
at most ``MAX_DETACHED`` per process and ``DRAIN_SECONDS`` each; past either, the
upstream is closed and the call is billed on what it reported so far, marked estimated.
When the relay ends, it records the call's event (``metering.record_call``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import httpx2

from .usage import Collector

logger = logging.getLogger(__name__)

MAX_DETACHED = 1000
DRAIN_SECONDS = 300.0

# Headers never passed between the client and the provider (hop-by-hop, framing,
# the caller's own credentials and the gateway's attribution).
_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "content-length",
    "content-encoding",
    "host",
    "authorization",
    "x-api-key",
    "cookie",
    "set-cookie",
    "accept-encoding",
}

# How many relays of this process read on for a client that went away.
_detached = {"count": 0}
# Relays still running: held here so a detached one is never garbage-collected.
_running: set[asyncio.Task[None]] = set()


def forwardable(name: str) -> bool:
    name = name.lower()
    return name not in _HOP and not name.startswith(("x-tanso-", "x-tolvyn-"))


@dataclass
class Head:
    status: int
    headers: list[tuple[str, str]]
    started: float  # perf_counter when the provider's head arrived


@dataclass
class Upcall:
    """One request to the provider and what came back."""

    url: str
    headers: dict[str, str]
    body: bytes
    stream: bool
    collector: Collector
    # For OpenAI chat streams where the gateway asked for usage: the usage-only chunk
    # is the gateway's, not the client's.
    drop_usage_chunk: bool = False
    head: Head | None = None
    error: Exception | None = None
    complete: bool = False
    answer: bytes = b""
    sent_at: float = 0.0
    upstream_seconds: float = 0.0
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # metered, or not billed
    deadline: asyncio.Timeout | None = None
    detached: bool = False


async def _sse_blocks(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Whole server-sent events (each with its blank-line terminator), as received."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk.replace(b"\r\n", b"\n")
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            yield buffer[: end + 2]
            buffer = buffer[end + 2 :]
    if buffer.strip():
        yield buffer


def _data_of(block: bytes) -> bytes:
    lines = [line[5:].lstrip() for line in block.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines)


def _usage_only(data: bytes) -> bool:
    if b'"usage"' not in data:
        return False
    try:
        chunk = json.loads(data)
    except ValueError:
        return False
    return isinstance(chunk, dict) and chunk.get("choices") == [] and bool(chunk.get("usage"))


async def _read_stream(up: Upcall, response: httpx2.Response) -> None:
    async for block in _sse_blocks(response.aiter_bytes()):
        data = _data_of(block)
        up.collector.observe_event(data)
        if up.drop_usage_chunk and _usage_only(data):
            continue
        if not up.detached:
            up.queue.put_nowait(block)


async def _exchange(up: Upcall, client: httpx2.AsyncClient) -> None:
    up.sent_at = time.perf_counter()
    request = client.build_request("POST", up.url, headers=up.headers, content=up.body)
    response = await client.send(request, stream=True)
    try:
        up.head = Head(response.status_code, _answer_headers(response), time.perf_counter())
        if not up.stream or response.status_code >= 400:
            up.answer = await response.aread()
            if response.status_code < 400:
                up.collector.answer_bytes = len(up.answer)
                up.collector.observe_json(_json_or_none(up.answer))
            up.upstream_seconds = time.perf_counter() - up.sent_at
            up.complete = True
            up.ready.set()
            return
        up.ready.set()
        await _read_stream(up, response)
        up.complete = True
    finally:
        await response.aclose()
        up.upstream_seconds = up.upstream_seconds or time.perf_counter() - up.sent_at


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _answer_headers(response: httpx2.Response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in response.headers.multi_items() if forwardable(k)]


async def run(
    up: Upcall, client: httpx2.AsyncClient, finish: Callable[[Upcall], Awaitable[None]]
) -> None:
    """The relay task's body: exchange with the provider, then ``finish`` (metering)."""
    try:
        async with asyncio.timeout(None) as deadline:
            up.deadline = deadline
            await _exchange(up, client)
    except TimeoutError:
        logger.warning("gateway: a detached stream was cut at its bound; billed on partial usage")
    except httpx2.HTTPError as exc:
        logger.warning("gateway: %s upstream error: %r", up.url, exc)
        up.error = exc
    except Exception as exc:  # the relay must always finish and bill
        logger.exception("gateway: relay failed")
        up.error = exc
    finally:
        up.ready.set()
        up.queue.put_nowait(None)
        _undetach(up)
        await finish(up)


def start(
    up: Upcall, client: httpx2.AsyncClient, finish: Callable[[Upcall], Awaitable[None]]
) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(run(up, client, finish))
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


def detach(up: Upcall) -> None:
    """The client went away: keep reading, within the process's bounds."""
    if up.detached or up.complete:
        return
    up.detached = True
    _detached["count"] += 1
    if up.deadline is None:
        return
    loop = asyncio.get_running_loop()
    if _detached["count"] > MAX_DETACHED:
        up.deadline.reschedule(loop.time())
    else:
        up.deadline.reschedule(loop.time() + DRAIN_SECONDS)


def _undetach(up: Upcall) -> None:
    if up.detached:
        _detached["count"] -= 1


# The stream's last event in each format ([DONE], message_stop, response.completed).
_TERMINAL = (b"data: [DONE]", b"event: message_stop", b"event: response.completed")


async def client_stream(up: Upcall) -> AsyncIterator[bytes]:
    """The events the client receives; on its disconnect the relay goes on alone.

    The stream's terminal event is held until the call's event is written: a client
    that saw its stream complete has its call recorded.
    """
    held: list[bytes] = []
    try:
        while True:
            block = await up.queue.get()
            if block is None:
                break
            if block.startswith(_TERMINAL):
                held.append(block)
                continue
            yield block
        await up.finished.wait()
        for block in held:
            yield block
    finally:
        if not up.complete:
            detach(up)


async def wait_running() -> None:
    """Wait for every relay of this process (a graceful shutdown, the tests)."""
    loop = asyncio.get_running_loop()
    while mine := [task for task in _running if task.get_loop() is loop]:
        await asyncio.gather(*mine, return_exceptions=True)


# Threads for the gateway's blocking work (budget reservations, event writes), per
# event loop: each holds at most one PostgreSQL connection.
BLOCKING_THREADS = 16
_limiters: dict[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = {}


def in_thread[T](func: Callable[..., T], *args: Any) -> Awaitable[T]:
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = anyio.CapacityLimiter(BLOCKING_THREADS)
    return anyio.to_thread.run_sync(func, *args, limiter=limiter)
