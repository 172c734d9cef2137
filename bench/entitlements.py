"""Entitlement checks and Platform ingestion through a real web server (granian).

    python -m bench --only entitlements

* checks/s (closed loop, N clients) and latency paced at 1,000 checks/s (open
  loop), beside a bare Redis round trip (GET) measured in the same run: the check
  makes one (a script: the API key's touch, the rate limit, the state token and the
  counter), with the CPU it took per check (server, Redis) and what other processes
  took meanwhile;
* single-event ingestion into a Platform environment (plan revenue, a cap, credit
  deduction, counters) beside the same events into an Observe-only environment.

Everything (customers, plan, subscriptions, pools) is made through the services
first; counters and caches are warmed before anything is measured. Nothing is
measured during the environment's first minute on Platform (``state.YOUNG_PLATFORM``:
counters are not built then, every check and event reads PostgreSQL instead); the
bench waits it out.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import multiprocessing as mp
import os
import time
import uuid
from decimal import Decimal
from typing import Any

from . import harness
from .harness import Row, log, percentile

CUSTOMERS = 200
CHECK_TARGET = 2_000  # checks/s
P99_TARGET_MS = 5.0  # at 1,000 checks/s
INGEST_LOSS_TARGET = 0.20


def _tenant(name: str) -> tuple[Any, str]:
    from django.db import connections

    from apps.accounts.audit import Actor
    from apps.accounts.models import Environment, User
    from apps.accounts.services import organization_create
    from apps.apikeys.services import apikey_create

    owner = User.objects.create_user(email=f"{name}{time.time_ns()}@tanso.local")
    org = organization_create(name=name, owner=owner, mode="platform", actor=Actor(user=owner))
    env = Environment.objects.select_related("organization").get(organization=org, kind="test")
    key = apikey_create(environment=env, kind="sk", actor=Actor.system()).plaintext
    connections.close_all()
    return env, key


def _platform(customers: int) -> tuple[Any, str]:
    """An environment whose customers are on "pro": ``tokens`` capped (hard, far away) at
    $0.000002 per unit, ``summaries`` credit-backed (2 credits per unit) from a soft pool."""
    from django.db import connections
    from django.utils import timezone

    from apps.accounts.audit import Actor
    from apps.credits.services import credit_grant, credit_model_create, credit_pool_ensure
    from apps.customers.models import Customer
    from apps.features.services import features_ensure
    from apps.plans.pricing import PricingModel, Rule
    from apps.plans.services import RuleSpec, plan_activate, plan_create
    from apps.subscriptions.services import subscription_create

    system = Actor.system()
    env, key = _tenant("Platform bench")
    features = features_ensure(environment=env, keys=["tokens", "summaries"])
    from apps.features.models import Feature

    by_key = {f.key: f for f in Feature.objects.filter(pk__in=features.values())}
    plan = plan_create(
        environment=env,
        key="pro",
        name="Pro",
        price_amount=Decimal(49),
        interval_months=1,
        billing_timing="in_advance",
        currency="USD",
        features=[
            (
                by_key["tokens"],
                RuleSpec(
                    rule=Rule(
                        model=PricingModel.PER_UNIT,
                        unit_price=Decimal("0.000002"),
                        max_usage=Decimal(10**11),
                    )
                ),
            ),
            (
                by_key["summaries"],
                RuleSpec(
                    rule=Rule(model=PricingModel.PER_UNIT, unit_price=Decimal("0.01")),
                    credit_denomination="AI_CREDITS",
                    credits_per_unit=Decimal(2),
                ),
            ),
        ],
        actor=system,
    )
    plan = plan_activate(plan=plan, actor=system)
    model = credit_model_create(
        environment=env,
        name="AI credits",
        denomination="AI_CREDITS",
        hard_limit=False,
        actor=system,
    )
    started = timezone.now() - dt.timedelta(days=2)
    first_subscription = time.monotonic()
    for n in range(customers):
        customer = Customer.objects.create(environment=env, reference_id=f"c{n}")
        subscription_create(
            environment=env, customer=customer, plan=plan, now=started, actor=system
        )
        pool = credit_pool_ensure(environment=env, customer=customer, credit_model=model)
        credit_grant(pool=pool, amount=Decimal(10**9), grant_type="manual", actor=system)
    connections.close_all()
    _platform_since["at"] = first_subscription
    return env, key


_platform_since = {
    "at": 0.0
}  # monotonic: when the Platform environment's first subscription was made


def _wait_for_counters() -> None:
    """Sleep out the environment's first minute on Platform (no counters are built then)."""
    from apps.entitlements.state import YOUNG_PLATFORM

    ready = _platform_since["at"] + YOUNG_PLATFORM.total_seconds() + 2
    wait = ready - time.monotonic()
    if wait > 0:
        log(f"entitlements: waiting {wait:.0f} s (no counters in an environment's first minute)")
        time.sleep(wait)


# -- load --------------------------------------------------------------------------------------


def _loop(
    args: tuple[int, str, str, list[bytes], float, int],
) -> tuple[list[float], list[float], int]:
    """One client: (client latencies s, server times ms from Server-Timing, failures)."""
    port, key, path, bodies, interval, expect = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    latencies: list[float] = []
    server: list[float] = []
    failures = 0
    next_at = time.perf_counter()
    for body in bodies:
        if interval:
            now = time.perf_counter()
            if now < next_at:
                time.sleep(next_at - now)
            next_at += interval
        t0 = time.perf_counter()
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        latencies.append(time.perf_counter() - t0)
        timing = response.getheader("Server-Timing") or ""
        if "dur=" in timing:
            server.append(float(timing.split("dur=")[1]))
        denied = path.endswith("/check") and b'"allowed":true' not in payload
        if response.status != expect or denied:
            failures += 1
    return latencies, server, failures


def post_many(
    port: int, key: str, path: str, per_client: list[list[bytes]], *, rate: float = 0, expect: int
) -> dict[str, Any]:
    interval = len(per_client) / rate if rate else 0.0
    start = time.perf_counter()
    with mp.get_context("fork").Pool(len(per_client)) as pool:
        results = pool.map(
            _loop, [(port, key, path, bodies, interval, expect) for bodies in per_client]
        )
    wall = time.perf_counter() - start
    latencies = sorted(x for r in results for x in r[0])
    return {
        "rps": len(latencies) / wall,
        "latencies": latencies,
        "server_ms": sorted(x for r in results for x in r[1]),
        "failures": sum(r[2] for r in results),
    }


def check_bodies(clients: int, per_client: int, customers: int) -> list[list[bytes]]:
    return [
        [
            json.dumps(
                {"customerReferenceId": f"c{(n * 7 + i) % customers}", "featureKey": "tokens"}
            ).encode()
            for i in range(per_client)
        ]
        for n in range(clients)
    ]


def _event(n: int, i: int, customers: int, feature: str) -> dict[str, Any]:
    return {
        "eventIdempotencyKey": uuid.uuid4().hex,
        "eventName": "summarize",
        "customerReferenceId": f"c{(n * 13 + i) % customers}",
        "featureKey": feature,
        "costInput": {"model": "gpt-4o", "inputTokens": 1200, "outputTokens": 300},
        "usageUnits": 3,
    }


def event_bodies(clients: int, per_client: int, customers: int, feature: str) -> list[list[bytes]]:
    return [
        [json.dumps(_event(n, i, customers, feature)).encode() for i in range(per_client)]
        for n in range(clients)
    ]


def batch_bodies(
    clients: int, batches: int, size: int, customers: int, feature: str
) -> list[list[bytes]]:
    out = []
    for n in range(clients):
        bodies = []
        for b in range(batches):
            events = []
            for i in range(size):
                event = _event(n, b * size + i, customers, feature)
                event["idempotencyKey"] = event.pop("eventIdempotencyKey")
                cost = event.pop("costInput")
                event.update(model=cost["model"], inputTokens=1200, outputTokens=300)
                events.append(event)
            bodies.append(json.dumps({"events": events}).encode())
        out.append(bodies)
    return out


def redis_round_trip(samples: int = 5000) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, ops/s) of GET on one connection, from this process."""
    import redis

    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    client.set("bench:rt", "1")
    out = []
    start = time.perf_counter()
    for _ in range(samples):
        t0 = time.perf_counter()
        client.get("bench:rt")
        out.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    out.sort()
    return percentile(out, 0.5) * 1000, percentile(out, 0.99) * 1000, samples / wall


def ms(values: list[float], q: float) -> float:
    return percentile(values, q) * 1000


def _median(results: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(results, key=lambda r: r["rps"])
    return ordered[len(ordered) // 2]


@contextlib.contextmanager
def _timed_server(workers: int, threads: int) -> Any:
    previous = os.environ.get("BENCH_WSGI")
    os.environ["BENCH_WSGI"] = "bench.servertiming:application"
    try:
        with harness.server(workers=workers, threads=threads) as port:
            yield port
    finally:
        if previous is None:
            os.environ.pop("BENCH_WSGI", None)
        else:
            os.environ["BENCH_WSGI"] = previous


def _redis_cpu() -> float:
    """CPU seconds used so far by redis-server processes (counted apart from "others")."""
    total = 0.0
    for _ppid, cmd, cpu in harness._processes().values():
        if cmd.startswith("redis-server") or "/redis-server" in cmd.split(" ")[0]:
            total += cpu
    return total


def _measured(fn: Any) -> tuple[Any, dict[str, float]]:
    """``fn()`` with the CPU it took by group (harness.CpuMeter), Redis apart."""
    meter = harness.CpuMeter()
    redis_before = _redis_cpu()
    meter.start()
    result = fn()
    cpu = meter.stop()
    cpu["redis"] = _redis_cpu() - redis_before
    cpu["other"] = max(cpu["other"] - cpu["redis"], 0.0)
    return result, cpu


def _cpu_note(cpu: dict[str, float], requests: int) -> str:
    return (
        f"CPU/check: server {cpu['server'] / requests * 1e6:,.0f} us"
        f" + Redis {cpu['redis'] / requests * 1e6:,.0f} us"
        f" + load generator {cpu['clients'] / requests * 1e6:,.0f} us;"
        f" other processes {cpu['other'] / cpu['wall']:.1f} of {os.cpu_count()} cores"
    )


def bench_entitlements(
    rows: list[Row],
    *,
    clients: int = 4,
    workers: int = 3,
    threads: int = 1,
    per_client: int = 3000,
    rounds: int = 3,
) -> None:
    log(f"entitlements: setting up {CUSTOMERS} subscribed customers")
    _, key = _platform(CUSTOMERS)
    _, observe_key = _tenant("Observe bench")
    path = "/api/v1/client/entitlements/check"
    events = "/api/v1/client/events"
    batch = "/api/events/ingest"
    single = {"observe": [], "credit": [], "capped": []}
    batches = {"observe": [], "credit": []}
    with _timed_server(workers, threads) as port:
        _wait_for_counters()
        log("entitlements: warming every worker (code, key, plan state, counters)")
        warm = workers * threads * 2
        post_many(port, key, path, check_bodies(warm, CUSTOMERS, CUSTOMERS), expect=200)
        for k in (observe_key, key):
            post_many(
                port, k, events, event_bodies(clients, 50, CUSTOMERS, "summaries"), expect=201
            )
        rt50, rt99, rt_ops = redis_round_trip()
        log("entitlements: checks, closed loop")
        bodies = check_bodies(clients, per_client, CUSTOMERS)
        peak, peak_cpu = _measured(lambda: post_many(port, key, path, bodies, expect=200))
        log("entitlements: checks paced at 1,000/s")
        bodies = check_bodies(clients, per_client // 2, CUSTOMERS)
        paced, paced_cpu = _measured(
            lambda: post_many(port, key, path, bodies, rate=1000, expect=200)
        )
        # Ingestion, Observe-only vs Platform, interleaved so load from elsewhere hits both.
        n = max(per_client // 6, 50)
        for round_ in range(rounds):
            log(f"entitlements: ingestion round {round_ + 1}/{rounds}")
            for label, k, feature in (
                ("observe", observe_key, "summaries"),
                ("credit", key, "summaries"),
                ("capped", key, "tokens"),
            ):
                bodies = event_bodies(clients, n, CUSTOMERS, feature)
                single[label].append(post_many(port, k, events, bodies, expect=201))
            for label, k in (("observe", observe_key), ("credit", key)):
                bodies = batch_bodies(2, 2, 1000, CUSTOMERS, "summaries")
                batches[label].append(post_many(port, k, batch, bodies, expect=200))
    failures = peak["failures"] + paced["failures"]
    failures += sum(r["failures"] for rs in (*single.values(), *batches.values()) for r in rs)
    if failures:
        log(f"entitlements: {failures} unexpected answers")
    sv = peak["server_ms"]
    rows.append(
        Row(
            f"entitlement check, {clients} clients, closed loop"
            f" ({harness.server_label(workers, threads)})",
            f"{peak['rps']:,.0f} checks/s (server p50 {percentile(sv, 0.5):.2f} ms,"
            f" p99 {percentile(sv, 0.99):.2f} ms;"
            f" {_cpu_note(peak_cpu, len(peak['latencies']))})",
            f"Redis GET {rt_ops:,.0f}/s (p50 {rt50:.3f} ms, p99 {rt99:.3f} ms)",
            "",
            f">= {CHECK_TARGET:,} checks/s",
            "met" if peak["rps"] >= CHECK_TARGET else "MISSED",
        )
    )
    ps = paced["server_ms"]
    p99 = percentile(ps, 0.99)
    rows.append(
        Row(
            f"entitlement check paced at 1,000/s ({paced['rps']:,.0f}/s reached)",
            f"server p50 {percentile(ps, 0.5):.2f} ms, p99 {p99:.2f} ms"
            f" (client p99 {ms(paced['latencies'], 0.99):.2f} ms;"
            f" {_cpu_note(paced_cpu, len(paced['latencies']))})",
            f"Redis GET p99 {rt99:.3f} ms",
            "",
            f"p99 <= {P99_TARGET_MS:g} ms server",
            "met" if p99 <= P99_TARGET_MS else "MISSED",
        )
    )
    observe = _median(single["observe"])
    for label, name in (("credit", "credit-backed"), ("capped", "capped, per-unit")):
        result = _median(single[label])
        ratio = result["rps"] / observe["rps"]
        rows.append(
            Row(
                f"single-event POST, Platform ({name}) vs Observe-only",
                f"{result['rps']:,.0f} req/s (server p50 {percentile(result['server_ms'], 0.5):.2f}"
                f" ms)",
                f"{observe['rps']:,.0f} req/s (server p50"
                f" {percentile(observe['server_ms'], 0.5):.2f} ms)",
                f"{ratio:.2f}",
                f"loses <= {INGEST_LOSS_TARGET:.0%}",
                "met" if 1 - ratio <= INGEST_LOSS_TARGET else "MISSED",
            )
        )
    b_observe, b_credit = _median(batches["observe"]), _median(batches["credit"])
    ratio = b_credit["rps"] / b_observe["rps"]
    rows.append(
        Row(
            "1000-event batches, Platform (credit-backed, 200 customers) vs Observe-only",
            f"{b_credit['rps'] * 1000:,.0f} events/s",
            f"{b_observe['rps'] * 1000:,.0f} events/s",
            f"{ratio:.2f}",
            f"loses <= {INGEST_LOSS_TARGET:.0%}",
            "met" if 1 - ratio <= INGEST_LOSS_TARGET else "MISSED",
        )
    )
