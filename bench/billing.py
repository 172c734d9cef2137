"""The billing run at scale: one period closed for 10,000 subscriptions with 1,000,000
events in it, on the bench database.

    python -m bench --only billing [--billing-subscriptions 10000 --billing-events 1000000]

Seeding is plain SQL (customers, subscriptions, events and their hourly rollups, as
ingestion would have left them) and is not timed. Timed: one
``billing_close_periods`` call at the period's end (in-arrears plan with a base fee,
a graduated feature and a capped per-unit feature with overage): it reads the
period's usage from the hourly rollups and writes an invoice with its lines per
subscription. Memory: RSS sampled every 50 ms during the run and after each batch
(flat = the last batch's RSS is about the first one's; peak = the process maximum).
"""

from __future__ import annotations

import datetime as dt
import resource
import threading
import time
from decimal import Decimal

from .harness import Row, log

PERIOD_START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
PERIOD_END = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
CLOSE_AT = PERIOD_END + dt.timedelta(minutes=5)
TARGET_SECONDS = 60


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _environment() -> object:
    from apps.accounts.audit import Actor
    from apps.accounts.models import Environment, User
    from apps.accounts.services import organization_create

    owner = User.objects.create_user(email=f"billing{time.time_ns()}@tanso.local")
    org = organization_create(name="Bench", owner=owner, mode="platform", actor=Actor(user=owner))
    return Environment.objects.select_related("organization").get(organization=org, kind="live")


def _plan(environment: object) -> object:
    from apps.accounts.audit import Actor
    from apps.features.models import Feature
    from apps.features.services import features_ensure
    from apps.plans.models import Plan
    from apps.plans.pricing import PricingModel, Rule, Tier
    from apps.plans.services import RuleSpec, plan_activate, plan_create

    features_ensure(environment=environment, keys=["tokens", "requests"])
    tokens = Feature.objects.get(environment=environment, key="tokens")
    requests = Feature.objects.get(environment=environment, key="requests")
    graduated = Rule(
        model=PricingModel.GRADUATED,
        tiers=(
            Tier(Decimal(10_000), Decimal(0)),
            Tier(Decimal(50_000), Decimal("0.0004"), Decimal(2)),
            Tier(None, Decimal("0.0001")),
        ),
    )
    capped = Rule(
        model=PricingModel.PER_UNIT,
        unit_price=Decimal("0.002"),
        max_usage=Decimal(25),
        overage_unit_price=Decimal("0.01"),
    )
    plan = plan_create(
        environment=environment,
        key="bench",
        name="Bench",
        price_amount=Decimal("29"),
        billing_timing=Plan.BillingTiming.IN_ARREARS,
        features=[(tokens, RuleSpec(rule=graduated)), (requests, RuleSpec(rule=capped))],
        actor=Actor.system(),
    )
    return plan_activate(plan=plan, actor=Actor.system())


SEED_SQL = [
    # Customers and one in-arrears subscription each, in the October period.
    """
    INSERT INTO customers_customer (id, environment_id, reference_id, email, first_name,
        last_name, phone, metadata, stripe_customer_id, source, created_at, updated_at)
    SELECT gen_random_uuid(), %(env)s, 'bench_' || g, '', '', '', '', '{}', '', 'manual',
        %(start)s, %(start)s
    FROM generate_series(1, %(subs)s) AS g
    """,
    """
    INSERT INTO subscriptions_subscription (id, environment_id, customer_id, plan_id, status,
        exclusive, started_at, trial_ends_at, billing_anchor, interval_months,
        current_period_start, current_period_end, cancel_mode, cancel_at, cancelled_at,
        ended_at, grace_period_days, metadata, created_at, updated_at)
    SELECT gen_random_uuid(), %(env)s, c.id, %(plan)s, 'active', true, %(start)s, NULL,
        %(start)s, 1, %(start)s, %(end)s, '', NULL, NULL, NULL, 3, '{}', %(start)s, %(start)s
    FROM customers_customer c WHERE c.environment_id = %(env)s
    """,
    "CREATE TEMP TABLE bench_customers AS SELECT id, (row_number() OVER (ORDER BY id)) - 1"
    " AS n FROM customers_customer WHERE environment_id = %(env)s",
    "CREATE UNIQUE INDEX ON bench_customers (n)",
    # Events spread over the period; a third are "requests" (1 unit), the rest "tokens".
    """
    INSERT INTO events_event (environment_id, idempotency_key, event_name, occurred_at,
        received_at, customer_id, feature_id, model, provider, usage_units, cost_usd,
        cost_source)
    SELECT %(env)s, 'bench-' || g, 'call',
        %(start)s + ((g::bigint * 7919) %% %(seconds)s) * interval '1 second',
        %(start)s, c.id,
        CASE WHEN g %% 3 = 0 THEN %(requests)s::uuid ELSE %(tokens)s::uuid END,
        'gpt-4o', 'openai',
        CASE WHEN g %% 3 = 0 THEN 1 ELSE (g %% 997) + 1 END,
        0.001, 'explicit'
    FROM generate_series(0, %(events)s - 1) AS g
    JOIN bench_customers c ON c.n = g %% %(subs)s
    """,
    # The hourly rollups ingestion keeps in step with the events.
    """
    INSERT INTO events_hourlyrollup (environment_id, bucket_start, customer_id, feature_id,
        model, provider, event_count, usage_units, input_tokens, output_tokens,
        cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_usd, revenue_usd,
        unpriced_count, revenue_count, duration_ms_sum, duration_count)
    SELECT environment_id, date_trunc('hour', occurred_at AT TIME ZONE 'UTC')
        AT TIME ZONE 'UTC', customer_id, feature_id, model, provider, count(*),
        sum(usage_units), 0, 0, 0, 0, 0, sum(cost_usd), 0, 0, 0, 0, 0
    FROM events_event WHERE environment_id = %(env)s
    GROUP BY 1, 2, 3, 4, 5, 6
    """,
]


def seed(subscriptions: int, events: int) -> object:
    from django.db import connection, transaction

    from apps.events.services import event_partitions_ensure
    from apps.features.models import Feature

    event_partitions_ensure()
    environment = _environment()
    plan = _plan(environment)
    features = dict(Feature.objects.filter(environment=environment).values_list("key", "id"))
    params = {
        "env": environment.pk,
        "plan": plan.pk,
        "start": PERIOD_START,
        "end": PERIOD_END,
        "seconds": int((PERIOD_END - PERIOD_START).total_seconds()),
        "subs": subscriptions,
        "events": events,
        "tokens": features["tokens"],
        "requests": features["requests"],
    }
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        for sql in SEED_SQL:
            cur.execute(sql, params)
    with connection.cursor() as cur:
        for table in (
            "events_event",
            "events_hourlyrollup",
            "subscriptions_subscription",
            "customers_customer",
        ):
            cur.execute(f"ANALYZE {table}")
        cur.execute(
            "SELECT count(*) FROM events_hourlyrollup WHERE environment_id = %s", [environment.pk]
        )
        rollups = cur.fetchone()[0]
    log(
        f"seeded {subscriptions:,} subscriptions, {events:,} events ({rollups:,} hourly "
        f"rollup rows) in {time.perf_counter() - started:.0f} s"
    )
    return environment


def bench_billing(rows: list[Row], subscriptions: int = 10_000, events: int = 1_000_000) -> None:
    from django.db import connection

    from apps.billing import services
    from apps.billing.models import Invoice, InvoiceLine
    from apps.billing.services import cycles

    environment = seed(subscriptions, events)
    batch_rss: list[float] = []
    original = cycles._close_batch

    def measured(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = original(*args, **kwargs)
        batch_rss.append(_rss_mb())
        return result

    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            samples.append(_rss_mb())

    baseline = _rss_mb()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cycles._close_batch = measured  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        result = services.billing_close_periods(now=CLOSE_AT)
        elapsed = time.perf_counter() - started
    finally:
        cycles._close_batch = original  # type: ignore[assignment]
        done.set()
        sampler.join()
    peak_sampled = max([*samples, *batch_rss, baseline])

    invoices = Invoice.objects.filter(environment=environment).count()
    lines = InvoiceLine.objects.filter(environment=environment).count()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT coalesce(sum(units_total), 0) FROM billing_invoiceline"
            " WHERE environment_id = %s AND kind = 'usage'",
            [environment.pk],
        )
        billed_units = cur.fetchone()[0]
        cur.execute(
            "SELECT sum(usage_units) FROM events_event WHERE environment_id = %s",
            [environment.pk],
        )
        event_units = cur.fetchone()[0]
    correct = invoices == subscriptions and billed_units == event_units
    log(
        f"billing run: {result.invoices:,} invoices, {lines:,} lines in {elapsed:.1f} s; "
        f"units billed {billed_units} = events {event_units}: {billed_units == event_units}"
    )
    log(
        f"RSS: {baseline:.0f} MB before, peak {peak_sampled:.0f} MB during "
        f"(process max {_peak_mb():.0f} MB); after batch 1 {batch_rss[0]:.0f} MB, "
        f"after batch {len(batch_rss)} {batch_rss[-1]:.0f} MB"
    )
    ok = elapsed <= TARGET_SECONDS and correct
    rows.append(
        Row(
            f"billing run: {subscriptions:,} subscriptions, {events:,} events in the period",
            f"{elapsed:.1f} s ({subscriptions / elapsed:,.0f} invoices/s), peak RSS "
            f"{peak_sampled:.0f} MB (+{peak_sampled - baseline:.0f}; batches "
            f"{batch_rss[0]:.0f}->{batch_rss[-1]:.0f} MB)",
            "",
            "",
            f"<= {TARGET_SECONDS} s, memory flat",
            "met" if ok else "MISSED",
        )
    )


def main() -> int:
    import argparse

    from . import harness

    parser = argparse.ArgumentParser(prog="python -m bench.billing", description=__doc__)
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    harness.recreate_database()
    harness.setup_django()
    rows: list[Row] = []
    bench_billing(rows, args.subscriptions, args.events)
    harness.print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
