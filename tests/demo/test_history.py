"""The demo history `make run` loads (``manage.py load_demo``): generated through the
product's services, idempotent (a second load adds and changes nothing), deterministic,
``cus_123`` left free for the quickstart, something true on every page, and nothing of
it visible to another organization."""

from __future__ import annotations

import datetime as dt
import io
import re
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.db.models import Count, Sum
from django.test import Client
from django.utils import timezone

from apps.accounts.models import AuditEntry, Environment, User
from apps.apikeys.models import ApiKey
from apps.apikeys.services import hash_key
from apps.billing.models import Invoice
from apps.credits.models import CreditGrant, CreditPool, CreditTransaction
from apps.customers.models import Customer
from apps.demo import history
from apps.demo.history import CUSTOMERS, HISTORY_DAYS, day_events, demo_history_load
from apps.demo.models import DemoHistory
from apps.demo.services import DEMO_EMAIL, DEMO_KEYS, demo_load
from apps.events.models import Event
from apps.features.models import Feature
from apps.plans.models import Plan
from apps.subscriptions.models import Subscription
from tests.conftest import make_tenant

pytestmark = pytest.mark.django_db(transaction=True)


def snapshot(environment: Environment) -> dict[str, Any]:
    """Everything the history writes, as comparable values."""
    events = Event.objects.filter(environment=environment)
    return {
        "events": events.aggregate(
            n=Count("id"), units=Sum("usage_units"), cost=Sum("cost_usd"), rev=Sum("revenue_usd")
        ),
        "customers": sorted(
            Customer.objects.filter(environment=environment).values_list(
                "reference_id", "email", "updated_at"
            )
        ),
        "features": sorted(Feature.objects.filter(environment=environment).values_list("key")),
        "plans": sorted(Plan.objects.filter(environment=environment).values_list("key", "status")),
        "subscriptions": sorted(
            Subscription.objects.filter(environment=environment).values_list(
                "customer__reference_id", "status", "current_period_end", "updated_at"
            )
        ),
        "invoices": sorted(
            Invoice.objects.filter(environment=environment).values_list(
                "number", "status", "total_minor", "paid_at", "updated_at"
            )
        ),
        "grants": CreditGrant.objects.filter(environment=environment).count(),
        "ledger": CreditTransaction.objects.filter(environment=environment).count(),
        "pools": sorted(
            CreditPool.objects.filter(environment=environment).values_list("pk", "balance")
        ),
        "audit": AuditEntry.objects.filter(environment=environment).count(),
        "cursor": list(DemoHistory.objects.values_list("version", "starts_on", "loaded_through")),
    }


def load(stdout: io.StringIO | None = None) -> str:
    out = stdout or io.StringIO()
    call_command("load_demo", stdout=out)  # the command `make run` runs
    return out.getvalue()


def test_load_demo_twice_gives_one_history_with_something_on_every_page():
    outsider = make_tenant("Outsider Inc")
    first = load()
    assert re.search(rf"History:\s+{HISTORY_DAYS} days, \d+ events added", first), first
    demo = demo_load()
    env = demo.environment
    before = snapshot(env)

    second = load()
    assert "already loaded" in second
    assert snapshot(env) == before  # nothing added, nothing changed

    # The business: 20 customers, 6 features, 2 plans, and never the quickstart's cus_123.
    refs = set(Customer.objects.filter(environment=env).values_list("reference_id", flat=True))
    assert refs == {spec.ref for spec in CUSTOMERS} and len(refs) == 20
    assert "cus_123" not in refs
    assert len(before["features"]) == 6 and [k for k, _ in before["plans"]] == ["scale", "starter"]
    assert {status for _, status in before["plans"]} == {Plan.Status.ACTIVE}

    events = Event.objects.filter(environment=env)
    yesterday = timezone.now().date() - dt.timedelta(days=1)
    days = set(events.dates("occurred_at", "day"))
    assert min(days) == yesterday - dt.timedelta(days=HISTORY_DAYS - 1)
    assert max(days) == yesterday
    # Written by the demo secret key through ingestion, priced by the catalog.
    key = ApiKey.objects.get(secret_hash=hash_key(DEMO_KEYS["sk_test"]))
    assert set(events.values_list("api_key_id", flat=True).distinct()) == {key.pk}
    providers = set(events.values_list("provider", flat=True).distinct())
    assert {"openai", "anthropic", "google"} <= providers
    assert events.filter(cache_read_tokens__gt=0, cost_source="catalog").exists()
    assert events.filter(cache_write_tokens__gt=0, cost_source="catalog").exists()
    assert events.filter(reasoning_tokens__gt=0, cost_source="catalog").exists()
    unpriced = events.filter(cost_source="unpriced")
    assert set(unpriced.values_list("model", flat=True).distinct()) == {"acme-mt-v2"}
    assert not unpriced.filter(cost_usd__isnull=False).exists()  # unknown, never zero
    sources = Counter(events.values_list("revenue_source", flat=True))
    assert sources["explicit"] > 0 and sources["plan_rule"] > 0  # Observe and plan revenue
    traces = events.exclude(trace_id="").values("trace_id").annotate(n=Count("id"))
    assert traces and min(t["n"] for t in traces) >= 3

    # Stored as generated: yesterday's events of every customer, key by key.
    index = (yesterday - DemoHistory.objects.get(environment=env).starts_on).days
    wanted = {
        e["eventIdempotencyKey"]: e for s in CUSTOMERS for e in day_events(s, yesterday, index)
    }
    stored = {
        e.idempotency_key: e
        for e in events.filter(idempotency_key__in=list(wanted)).select_related("customer")
    }
    assert stored.keys() == wanted.keys()
    for key_, event in stored.items():
        sent = wanted[key_]
        assert (event.customer.reference_id, event.model, event.input_tokens) == (
            sent["customerReferenceId"],
            sent["model"],
            sent["inputTokens"],
        )
        assert event.usage_units == Decimal(sent["usageUnits"])
        if "revenueAmount" in sent:
            assert event.revenue_usd == Decimal(sent["revenueAmount"])

    # Subscriptions, invoices paid, due and past due, credit pools with grants and usage.
    assert len(before["subscriptions"]) == 11
    statuses = Counter(Invoice.objects.filter(environment=env).values_list("status", flat=True))
    assert statuses["paid"] > 0 and statuses["due"] > 0 and statuses["past_due"] > 0
    assert Invoice.objects.filter(environment=env, status="paid", paid_at__isnull=False).exists()
    ledger = Counter(
        CreditTransaction.objects.filter(environment=env).values_list("transaction_type", flat=True)
    )
    assert ledger["grant"] > 0 and ledger["deduction"] > 0
    assert CreditGrant.objects.filter(environment=env, grant_type="purchased").exists()

    # Every page area shows it (the last 30 days by default).
    web = Client()
    web.force_login(User.objects.get(email=DEMO_EMAIL))
    pages = {
        "overview": "/dashboard/",
        "customers": "/dashboard/customers/",
        "features": "/dashboard/features/",
        "models": "/dashboard/models/",
        "heatmap": "/dashboard/heatmap/",
        "invoices": "/dashboard/invoices/",
        "credits": "/dashboard/credits/",
        "trace": f"/dashboard/traces/{traces[0]['trace_id']}",
    }
    html = {}
    for name, url in pages.items():
        response = web.get(url)
        assert response.status_code == 200, (name, response.status_code)
        html[name] = response.content.decode()
    overview = re.search(r'data-testid="overview"[^>]*data-events="(\d+)"', html["overview"], re.S)
    assert overview and int(overview.group(1)) > 1000
    assert len(set(re.findall(r'<tr data-customer="([^"]+)"', html["customers"]))) == 20
    assert len(set(re.findall(r'<tr data-feature="([^"]+)"', html["features"]))) == 6
    models = set(re.findall(r'<tr data-model="([^"]+)"', html["models"]))
    assert {"gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-pro", "acme-mt-v2"} <= models
    bands = set(re.findall(r'class="cell band-(\w+)"', html["heatmap"])) - {"none"}
    assert len(bands) >= 2  # margins differ: not one colour
    invoice_states = set(
        re.findall(r'<tr data-invoice="[^"]+" data-status="(\w+)"', html["invoices"])
    )
    assert {"paid", "due", "past_due"} <= invoice_states
    assert len(re.findall(r"<tr data-pool=", html["credits"])) >= 4
    trace = re.search(r'data-testid="trace-totals" data-events="(\d+)"', html["trace"])
    assert trace and int(trace.group(1)) >= 3

    # Only the demo's test environment holds it; another organization sees none of it.
    assert not Event.objects.filter(environment=demo.organization.environments.get(kind="live"))
    assert not Event.objects.filter(environment=outsider.test).exists()
    answer = outsider.api().get("/api/v1/client/customers")
    assert answer.status_code == 200 and answer.json()["items"] == []
    outsider_web = Client()
    outsider_web.force_login(outsider.owner)
    assert "cus_northwind" not in outsider_web.get("/dashboard/customers/").content.decode()
    assert outsider_web.get(pages["trace"]).status_code == 404


def test_the_generator_is_deterministic():
    day = dt.date(2026, 11, 2)
    for spec in CUSTOMERS:
        assert day_events(spec, day, 50) == day_events(spec, day, 50)
        assert day_events(spec, day, spec.joined - 1) == []  # nothing before it joined
    keys = [e["eventIdempotencyKey"] for s in CUSTOMERS for e in day_events(s, day, 50)]
    assert len(keys) == len(set(keys)) > 100


def test_a_later_day_tops_up_and_a_new_version_replays_without_duplicates(monkeypatch):
    demo = demo_load()
    env, key = demo.environment, demo.keys["sk_test"]
    now = timezone.now()
    first = demo_history_load(environment=env, secret_key=key, now=now - dt.timedelta(days=1))
    assert first.days == HISTORY_DAYS and first.events > 0
    events = Event.objects.filter(environment=env)
    count = events.count()
    invoices = Invoice.objects.filter(environment=env).count()

    # The next day: only the day that passed is added.
    later = demo_history_load(environment=env, secret_key=key, now=now)
    assert later.days == 1 and later.events > 0
    assert events.count() == count + later.events
    day_before = now.date() - dt.timedelta(days=1)
    added = events.order_by("-id")[: later.events]
    assert {e.occurred_at.date() for e in added} == {day_before}
    assert demo_history_load(environment=env, secret_key=key, now=now).days == 0

    # A new generator version replays the window: what exists is kept, nothing doubled.
    before = snapshot(env)
    monkeypatch.setattr(history, "VERSION", history.VERSION + 1)
    replay = demo_history_load(environment=env, secret_key=key, now=now)
    assert replay.days == HISTORY_DAYS and replay.events == 0
    after = snapshot(env)
    assert after["events"] == before["events"] and after["grants"] == before["grants"]
    assert Invoice.objects.filter(environment=env).count() >= invoices
    assert [row[:3] for row in after["invoices"]] == [row[:3] for row in before["invoices"]]
    assert DemoHistory.objects.get(environment=env).version == history.VERSION
