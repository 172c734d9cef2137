"""The LLM gateway's overhead: direct to a loopback provider vs through the gateway, in
the same run.

    python -m bench.gateway [--calls 2000] [--concurrency 200] [--streams 500]

* non-streamed calls at ``--concurrency``: latency percentiles direct and through the
  gateway, their difference, and the gateway's own ``X-Tanso-Overhead-Ms``;
* ``--streams`` streams held open at once through the gateway: the gateway process's
  memory (RSS) while they are open, and time-to-first-byte direct vs through it.

The provider is a minimal asyncio HTTP server in its own process (fixed answers, so its
cost is small and the same both ways); the gateway is the ``asgi`` process of the
Procfile (uvicorn serving tanso.asgi) against the bench database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import harness
from .harness import log, percentile

ROOT = Path(__file__).resolve().parents[1]
USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
ANSWER = json.dumps(
    {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": USAGE,
    }
).encode()
STREAM_SECONDS = 10.0


def _chunk(data: object) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


async def _serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = json.loads(await reader.readexactly(length)) if length else {}
            if not body.get("stream"):
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(ANSWER)}\r\n\r\n".encode()
                    + ANSWER
                )
                await writer.drain()
                continue
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
            writer.write(b"Connection: close\r\n\r\n")
            base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
            for _ in range(10):
                delta = {"index": 0, "delta": {"content": "x"}, "finish_reason": None}
                writer.write(_chunk({**base, "choices": [delta]}))
                await writer.drain()
                await asyncio.sleep(STREAM_SECONDS / 10)
            writer.write(_chunk({**base, "choices": [], "usage": USAGE}) + b"data: [DONE]\n\n")
            await writer.drain()
            break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _provider(port: int) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_serve_one, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _setup(provider_url: str) -> str:
    """A tenant whose test environment forwards to the loopback provider; its key."""
    from django.db import connections

    from apps.accounts.models import Environment
    from apps.gateway.services import credential_set

    env_id, secret = harness.tenant()  # a secret key holds every scope, proxy.chat too
    env = Environment.objects.select_related("organization").get(pk=env_id)
    credential_set(
        environment=env, provider="openai", secret="sk-bench-0000", base_url=provider_url
    )
    connections.close_all()
    return secret


async def _calls(
    url: str, key: str, total: int, concurrency: int
) -> tuple[list[float], list[float]]:
    import httpx2

    latencies: list[float] = []
    overheads: list[float] = []
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx2.AsyncClient(limits=limits, timeout=60) as client:
        queue = list(range(total))

        async def worker() -> None:
            while queue:
                queue.pop()
                started = time.perf_counter()
                answer = await client.post(
                    url, json=body, headers={"Authorization": f"Bearer {key}"}
                )
                latencies.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, answer.text
                if "x-tanso-overhead-ms" in answer.headers:
                    overheads.append(float(answer.headers["x-tanso-overhead-ms"]))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sorted(latencies), sorted(overheads)


async def _streams(
    url: str, key: str, count: int, rss: Callable[[], int]
) -> tuple[list[float], int]:
    import httpx2

    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    first_bytes: list[float] = []
    peak = [0]
    limits = httpx2.Limits(max_connections=count + 10)
    async with httpx2.AsyncClient(limits=limits, timeout=120) as client:

        async def one() -> None:
            started = time.perf_counter()
            async with client.stream(
                "POST", url, json=body, headers={"Authorization": f"Bearer {key}"}
            ) as answer:
                async for _ in answer.aiter_bytes():
                    if len(first_bytes) < count and started:
                        first_bytes.append((time.perf_counter() - started) * 1000)
                        started = 0.0

        async def sample() -> None:
            for _ in range(int(STREAM_SECONDS * 2)):
                peak[0] = max(peak[0], rss())
                await asyncio.sleep(0.5)

        await asyncio.gather(sample(), *(one() for _ in range(count)))
    return sorted(first_bytes), peak[0]


def _rss_of(pid: int) -> int:
    """Resident memory of the gateway's process (one uvicorn worker), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _wait_for(port: int, seconds: float = 60) -> None:
    import httpx2

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("the ASGI process did not start")


def _report(name: str, values: list[float]) -> str:
    return f"{name}: p50 {percentile(values, 0.5):.2f} ms, p99 {percentile(values, 0.99):.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--streams", type=int, default=500)
    args = parser.parse_args()

    harness.recreate_database()
    harness.setup_django()
    provider_port, gateway_port = harness.free_port(), harness.free_port()
    provider = multiprocessing.Process(target=_provider, args=(provider_port,), daemon=True)
    provider.start()
    provider_url = f"http://127.0.0.1:{provider_port}/v1"
    key = _setup(provider_url)
    cmd = [sys.executable, "-m", "uvicorn", "tanso.asgi:application", "--port", str(gateway_port),
           "--log-level", "warning", "--no-access-log"]  # fmt: skip
    gateway = subprocess.Popen(cmd, cwd=ROOT, env=harness.bench_env())
    try:
        _wait_for(gateway_port)
        gw_url = f"http://127.0.0.1:{gateway_port}/gateway/openai/v1/chat/completions"
        direct_url = provider_url + "/chat/completions"
        asyncio.run(_calls(gw_url, key, 200, 50))  # warm up: the key, the catalog, pools
        direct, _ = asyncio.run(_calls(direct_url, key, args.calls, args.concurrency))
        through, overhead = asyncio.run(_calls(gw_url, key, args.calls, args.concurrency))
        log(_report(f"direct, {args.concurrency} concurrent", direct))
        log(_report(f"through the gateway, {args.concurrency} concurrent", through))
        log(
            f"difference: p50 {percentile(through, 0.5) - percentile(direct, 0.5):.2f} ms,"
            f" p99 {percentile(through, 0.99) - percentile(direct, 0.99):.2f} ms"
        )
        log(_report("X-Tanso-Overhead-Ms", overhead))
        direct_ttfb, _ = asyncio.run(_streams(direct_url, key, 50, lambda: 0))
        ttfb, rss = asyncio.run(_streams(gw_url, key, args.streams, lambda: _rss_of(gateway.pid)))
        log(_report("time to first byte, direct (50 streams)", direct_ttfb))
        log(_report(f"time to first byte, gateway ({args.streams} streams)", ttfb))
        log(f"{args.streams} open streams: gateway RSS peak {rss / 2**20:.0f} MiB")
    finally:
        gateway.terminate()
        gateway.wait(10)
        provider.terminate()


if __name__ == "__main__":
    main()
