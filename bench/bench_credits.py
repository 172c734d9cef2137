"""Micro-benchmark of the credit deduction hot path (``credits_deduct_for_usage``).

    DATABASE_URL=postgres://...:5432/postgres REDIS_URL=... .venv/bin/python bench/bench_credits.py

Runs against its own database (BENCH_DATABASE_NAME, default ``tanso_bench_credits``),
dropped, recreated and migrated each run. Each deduction runs in its own
transaction, as an event's does at ingestion (here without the event insert):

* ``one pool``: sequential deductions from one customer's pool (3 grants, 2 weights);
* ``one pool, N threads``: the same pool from N threads (serialized by its row lock);
* ``many pools, N threads``: N threads over 200 customers' pools.

Prints deductions per second and per-call latency percentiles, beside a baseline
measured in the same run (one primary-key SELECT in its own transaction), since
the machine's load moves every absolute figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("BENCH_DATABASE_NAME", "tanso_bench_credits")

from bench import harness


def _setup(customers: int) -> tuple[object, list[object], object]:
    import datetime as dt

    from django.utils import timezone

    from apps.accounts.audit import Actor
    from apps.accounts.models import Environment, User
    from apps.accounts.services import organization_create
    from apps.credits.models import CreditWeight
    from apps.credits.services import credit_grant, credit_model_create, credit_pool_ensure
    from apps.customers.models import Customer
    from apps.features.models import Feature

    owner = User.objects.create_user(email=f"bench{time.time_ns()}@tanso.local")
    org = organization_create(name="Bench", owner=owner, mode="platform", actor=Actor(user=owner))
    env = Environment.objects.select_related("organization").get(organization=org, kind="test")
    model = credit_model_create(
        environment=env, name="AI", denomination="AI_CREDITS", hard_limit=True, actor=Actor()
    )
    feature = Feature.objects.create(environment=env, key="chat")
    past = timezone.now() - dt.timedelta(days=1)
    CreditWeight.objects.create(
        environment=env, feature=feature, credits_per_unit=Decimal("0.5"), effective_from=past
    )
    CreditWeight.objects.create(
        environment=env,
        feature=feature,
        model="gpt-4o",
        credits_per_unit=Decimal("2"),
        effective_from=past,
    )
    pools = []
    for n in range(customers):
        customer = Customer.objects.create(environment=env, reference_id=f"cus_{n}")
        pool = credit_pool_ensure(environment=env, customer=customer, credit_model=model)
        for kind, amount in (
            ("plan", "1000000"),
            ("promotional", "1000"),
            ("purchased", "5000000"),
        ):
            credit_grant(
                pool=pool,
                amount=Decimal(amount),
                grant_type=kind,
                actor=None,
                expires_at=timezone.now() + dt.timedelta(days=30) if kind == "plan" else None,
            )
        pools.append(pool)
    return env, pools, feature


def _run(env: object, pools: list[object], feature: object, threads: int, each: int) -> dict:
    from django.db import connection, transaction
    from django.utils import timezone

    from apps.credits.services import credits_deduct_for_usage

    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def work(index: int) -> None:
        mine: list[float] = []
        try:
            barrier.wait()
            for n in range(each):
                pool = pools[(index * each + n) % len(pools)]
                started = time.perf_counter()
                with transaction.atomic():
                    credits_deduct_for_usage(
                        environment=env,
                        customer_id=pool.customer_id,
                        feature_id=feature.pk,
                        model="gpt-4o" if n % 2 else "",
                        units=Decimal("3.5"),
                        occurred_at=timezone.now(),
                        event_ref=uuid.uuid4().hex,
                        denomination="AI_CREDITS",
                    )
                mine.append(time.perf_counter() - started)
        finally:
            connection.close()
            with lock:
                latencies.extend(mine)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "deductions": len(latencies),
        "per_second": len(latencies) / elapsed,
        "p50_ms": harness.percentile(latencies, 0.50) * 1000,
        "p99_ms": harness.percentile(latencies, 0.99) * 1000,
    }


def _baseline(pool: object, count: int) -> float:
    """The floor on this machine right now: one primary-key SELECT in its own transaction."""
    from django.db import transaction

    from apps.credits.models import CreditPool

    started = time.perf_counter()
    for _ in range(count):
        with transaction.atomic():
            CreditPool.objects.filter(pk=pool.pk).first()  # type: ignore[attr-defined]
    return (time.perf_counter() - started) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--each", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    harness.recreate_database()
    harness.setup_django()
    env, pools, feature = _setup(customers=200)
    _run(env, pools[:1], feature, 1, 50)  # warm the weight cache and the connection
    print(f"{'baseline: 1 SELECT in a tx':<28} {_baseline(pools[0], args.each):>6.2f} ms per call")
    for name, selected, threads, each in (
        ("one pool", pools[:1], 1, args.each),
        (f"one pool, {args.threads} threads", pools[:1], args.threads, args.each // args.threads),
        (f"many pools, {args.threads} threads", pools, args.threads, args.each // args.threads),
    ):
        result = _run(env, selected, feature, threads, each)
        print(
            f"{name:<28} {result['deductions']:>6} deductions  {result['per_second']:>8.0f}/s"
            f"  p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms"
        )


if __name__ == "__main__":
    main()
