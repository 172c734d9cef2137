"""`make bench`: each figure beside the raw ceiling measured in the same run.

    python -m bench [--only ingest,single,reads,pages,entitlements]
                    [--read-scales 1000000,10000000]

Runs against a dedicated database (BENCH_DATABASE_NAME, default tanso_bench) on
the server DATABASE_URL points at; it is dropped and recreated each run, unless
BENCH_REUSE=1: then it is kept, and the reads and pages reuse the events a
previous run seeded (for measuring a change to the pages without re-seeding).
The app is served by granian, as the Procfile runs it (BENCH_SERVER=gunicorn
serves it with gunicorn instead, for comparison).
"""

from __future__ import annotations

import argparse
import json
import sys

from . import harness
from .harness import Row, log, percentile


def bench_ingest(
    rows: list[Row], clients: int, batches_per_client: int, workers: int, threads: int
) -> None:
    from .ceiling import copy_ceiling
    from .load import batch_ingest
    from .workload import make_batches

    _, key = harness.tenant()
    per_client = [
        make_batches(seed=n, batches=batches_per_client, size=1000) for n in range(clients)
    ]
    bodies = [[json.dumps({"events": b}).encode() for b in batches] for batches in per_client]
    meter = harness.CpuMeter()
    with harness.server(workers=workers, threads=threads) as port:
        harness.warm_up(port, key, workers)
        meter.start()
        result = batch_ingest(port, key, bodies)
        cpu = meter.stop()
    log(harness.cpu_note(cpu, result["accepted"] + result["duplicates"], "event"))
    if result["errors"]:
        log(f"ingest errors: {result['errors'][:3]}")
    ceiling = copy_ceiling(harness.bench_database_url(), per_client)
    ratio = result["events_per_s"] / ceiling["events_per_s"]
    ok = result["events_per_s"] >= 15_000 and ratio >= 0.35
    events = result["accepted"] + result["duplicates"]
    rows.append(
        Row(
            f"batch ingest, HTTP, {clients} clients x 1000-event batches, 10% dups"
            f" ({harness.server_label(workers, threads)})",
            f"{result['events_per_s']:,.0f} events/s ({harness.cpu_note(cpu, events, 'event')})",
            f"{ceiling['events_per_s']:,.0f} events/s (COPY + ON CONFLICT)",
            f"{ratio:.2f}",
            ">= 15,000/s and >= 0.35",
            "met" if ok else "MISSED",
        )
    )


def ms(latencies: list[float], q: float) -> str:
    return f"{percentile(latencies, q) * 1000:.1f} ms"


def bench_single(
    rows: list[Row], clients: int, per_client: int, workers: int, threads: int
) -> None:
    from .load import single_events
    from .workload import make_batches

    _, key = harness.tenant()

    def bodies(seed: int) -> list[list[bytes]]:
        out = []
        for n in range(clients):
            events = make_batches(seed=seed + n, batches=1, size=per_client, duplicate_share=0)[0]
            out.append(
                [
                    json.dumps(
                        {
                            "eventIdempotencyKey": e["idempotencyKey"],
                            "eventName": e["eventName"],
                            "customerReferenceId": e["customerReferenceId"],
                            "featureKey": e["featureKey"],
                            "costInput": {
                                "model": e["model"],
                                "modelProvider": e["modelProvider"],
                                "inputTokens": e["inputTokens"],
                                "outputTokens": e["outputTokens"],
                            },
                            "usageUnits": e["inputTokens"] + e["outputTokens"],
                        }
                    ).encode()
                    for e in events
                ]
            )
        return out

    meter = harness.CpuMeter()
    with harness.server(workers=workers, threads=threads) as port:
        harness.warm_up(port, key, workers)
        single_events(port, key, [b[:200] for b in bodies(5000)])  # warm the id caches
        meter.start()
        peak = single_events(port, key, bodies(100))
        cpu = meter.stop()
        half = single_events(port, key, bodies(200), rate=peak["rps"] / 2)
    lat = peak["latencies"]
    rows.append(
        Row(
            f"single-event POST, {clients} clients, closed loop"
            f" ({harness.server_label(workers, threads)})",
            f"{peak['rps']:,.0f} req/s (p50 {ms(lat, 0.5)}, p99 {ms(lat, 0.99)};"
            f" {harness.cpu_note(cpu, peak['requests'], 'request')})",
            "",
            "",
            ">= 700 req/s",
            "met" if peak["rps"] >= 700 else "MISSED",
        )
    )
    hl = half["latencies"]
    p99 = percentile(hl, 0.99) * 1000
    rows.append(
        Row(
            f"single-event POST at half load ({half['rps']:,.0f} req/s)",
            f"p50 {percentile(hl, 0.5) * 1000:.1f} ms, p99 {p99:.1f} ms",
            "",
            "",
            "p99 <= 25 ms",
            "met" if p99 <= 25 else "MISSED",
        )
    )
    if peak["failures"] or half["failures"]:
        log(f"single-event failures: {peak['failures']} / {half['failures']}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default="ingest,single,reads,pages,entitlements")
    parser.add_argument("--clients", type=int, default=4)
    # The Procfile's defaults (WEB_CONCURRENCY=3, WEB_THREADS=1): on 2 cores two threads
    # in one worker contend for its GIL (checks: median 2,331/s at 3 x 1 against 1,811/s
    # at 2 x 2, ingestion alike; see docs/scaling.md).
    parser.add_argument("--workers", type=int, default=3, help="web server workers")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads per worker (granian: blocking threads; gunicorn: gthread)",
    )
    parser.add_argument("--batches-per-client", type=int, default=25)
    parser.add_argument("--single-per-client", type=int, default=2000)
    parser.add_argument("--read-scales", default="1000000,10000000")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))

    harness.recreate_database()
    harness.setup_django()
    rows: list[Row] = []
    if "ingest" in only:
        log("batch ingestion")
        bench_ingest(rows, args.clients, args.batches_per_client, args.workers, args.threads)
    if "single" in only:
        log("single-event POST")
        bench_single(rows, args.clients, args.single_per_client, args.workers, args.threads)
    if "reads" in only or "pages" in only:
        from .pages import bench_pages
        from .reads import bench_reads

        for scale in [int(s) for s in args.read_scales.split(",") if s]:
            if "reads" in only:
                log(f"analytics reads over {scale:,} events")
                bench_reads(rows, scale)
            if "pages" in only:
                log(f"dashboard pages over {scale:,} events")
                bench_pages(rows, scale)
    if "entitlements" in only:
        from .entitlements import bench_entitlements

        log("entitlement checks and Platform ingestion")
        bench_entitlements(rows, clients=args.clients, workers=args.workers, threads=args.threads)
    if "billing" in only:
        from .billing import bench_billing

        log("billing run: 10,000 subscriptions, 1,000,000 events")
        bench_billing(rows)
    print()
    harness.print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
