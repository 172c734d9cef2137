"""Load generators, each in its own process with one keep-alive connection."""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import time
from typing import Any


def _conn(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=60)


def _send_batches(args: tuple[int, str, list[bytes]]) -> tuple[int, int, float, list[str]]:
    port, key, bodies = args
    conn = _conn(port)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    accepted = duplicates = 0
    errors: list[str] = []
    rejected = 0
    start = time.perf_counter()
    for body in bodies:
        conn.request("POST", "/api/events/ingest", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        if response.status >= 300:
            errors.append(f"{response.status} {payload[:200]!r}")
            continue
        answer = json.loads(payload)
        accepted += int(answer.get("accepted", 0))
        duplicates += int(answer.get("duplicates", 0))
        if answer.get("rejected"):
            rejected += int(answer["rejected"])
            errors.append(f"{response.status} rejected: {answer['errors'][:1]!r}")
    return accepted, duplicates, time.perf_counter() - start, errors


def batch_ingest(port: int, key: str, per_client: list[list[bytes]]) -> dict[str, Any]:
    start = time.perf_counter()
    with mp.get_context("fork").Pool(len(per_client)) as pool:
        results = pool.map(_send_batches, [(port, key, bodies) for bodies in per_client])
    wall = time.perf_counter() - start
    accepted = sum(r[0] for r in results)
    duplicates = sum(r[1] for r in results)
    errors = [e for r in results for e in r[3]]
    return {
        "accepted": accepted,
        "duplicates": duplicates,
        "seconds": wall,
        "events_per_s": (accepted + duplicates) / wall,
        "errors": errors,
    }


def _single(args: tuple[int, str, list[bytes], float]) -> tuple[list[float], int]:
    """Send events one by one; ``interval`` > 0 paces an open loop (fixed rate)."""
    port, key, bodies, interval = args
    conn = _conn(port)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    latencies: list[float] = []
    failures = 0
    next_at = time.perf_counter()
    for body in bodies:
        if interval:
            now = time.perf_counter()
            if now < next_at:
                time.sleep(next_at - now)
            next_at += interval
        t0 = time.perf_counter()
        conn.request("POST", "/api/v1/client/events", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - t0)
        if response.status != 201:
            failures += 1
    return latencies, failures


def single_events(
    port: int, key: str, per_client: list[list[bytes]], rate: float = 0.0
) -> dict[str, Any]:
    interval = len(per_client) / rate if rate else 0.0
    start = time.perf_counter()
    with mp.get_context("fork").Pool(len(per_client)) as pool:
        results = pool.map(_single, [(port, key, bodies, interval) for bodies in per_client])
    wall = time.perf_counter() - start
    latencies = sorted(x for r in results for x in r[0])
    return {
        "requests": len(latencies),
        "seconds": wall,
        "rps": len(latencies) / wall,
        "latencies": latencies,
        "failures": sum(r[1] for r in results),
    }


def _get(args: tuple[int, str, str, int]) -> list[float]:
    port, key, path, count = args
    conn = _conn(port)
    headers = {"Authorization": f"Bearer {key}"}
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path} -> {response.status}")
        out.append(time.perf_counter() - t0)
    return out


def read_latency(
    port: int, key: str, path: str, clients: int = 2, per_client: int = 100
) -> list[float]:
    with mp.get_context("fork").Pool(clients) as pool:
        results = pool.map(_get, [(port, key, path, per_client)] * clients)
    return sorted(x for r in results for x in r)
