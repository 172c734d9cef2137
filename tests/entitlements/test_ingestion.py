"""The entitlements step in the ingestion pipeline: declared in settings, idle (and
free) in Observe-only environments, counters built only once an environment has been on
Platform for a while, and the ledger's rollups untouched by it."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.alerts.ingestion import AlertsStep
from apps.core.redis import get_redis
from apps.entitlements import state
from apps.entitlements.ingestion import EntitlementsStep
from apps.events import pipeline
from apps.events.models import Event
from apps.stripe_meters.ingestion import MeterEventsStep
from tests.events.conftest import rollup_mismatches

from .conftest import batch_event, rule

pytestmark = pytest.mark.django_db


def test_the_steps_run_in_the_settings_order_and_the_ledger_does_not_import_us():
    assert [type(step) for step in pipeline.steps()] == [
        EntitlementsStep,
        MeterEventsStep,
        AlertsStep,
    ]
    import apps.events.ingest as ingest_module
    import apps.events.pipeline as pipeline_module

    for module in (ingest_module, pipeline_module):
        source = open(module.__file__).read()  # noqa: SIM115
        assert "apps.entitlements" not in source and "stripe_meters" not in source
        assert "apps.credits" not in source and "apps.subscriptions" not in source


def test_observe_only_environments_skip_it_entirely(platform):
    assert pipeline.steps_for(platform.env) == []
    with CaptureQueriesContext(connection) as queries:
        response = platform.event(units=5)
    assert response.status_code == 201
    sqls = [q["sql"] or "" for q in queries.captured_queries]
    assert not any("pg_advisory_xact_lock(k)" in sql for sql in sqls)
    assert not get_redis().keys(f"tanso:{{{platform.env.pk}}}:ent:*")
    assert response.json()["revenueAmount"] is None


def test_the_first_subscription_turns_it_on(platform):
    assert pipeline.steps_for(platform.env) == []
    platform.subscribe(platform.plan("pro", {"tokens": rule(price="1")}))
    assert [type(s) for s in pipeline.steps_for(platform.env)] == [EntitlementsStep]
    assert platform.event(units=2).json()["revenueAmount"] == "2"


def test_no_counters_in_the_first_minute_of_platform(platform):
    platform.subscribe(platform.plan("pro", {"tokens": rule(price="1", cap="10")}), days_ago=0)
    assert platform.check()["usage"]["used"] == "0"
    platform.event(units=4)
    assert platform.check()["usage"]["used"] == "4"  # from PostgreSQL
    assert platform.counter() == {}


def test_rollups_stay_equal_to_the_events(platform):
    tiers = [("10", "1", "0"), (None, "0.5", "1")]
    platform.subscribe(platform.plan("pro", {"tokens": rule("graduated", tiers=tiers, cap="30")}))
    platform.batch([batch_event(units=u) for u in (8, 8, 20)])
    platform.event(units=3)
    assert rollup_mismatches() == []
    # Duplicates (within a batch, across batches, of a single event) add nothing to the
    # rollups, with the pipeline's steps running around the store.
    twice = batch_event(units=0, idempotencyKey="k-twice")
    answer = platform.batch([twice, twice, batch_event(units=0, idempotencyKey="k-other")])
    assert answer.json()["accepted"] == 2 and answer.json()["duplicates"] == 1
    assert platform.batch([twice]).json()["duplicates"] == 1
    assert platform.event(units=0, idempotencyKey="k-other").status_code == 409
    assert rollup_mismatches() == []
    revenue = sum(e.revenue_usd for e in Event.objects.filter(environment=platform.env))
    # 10 x 1 + 1 (second tier entered) + 20 x 0.5 within the cap of 30; 9 units beyond it
    # are not billed (hard cap).
    assert revenue == D(21)


def test_plan_changes_reach_a_warm_cache(platform):
    plan = platform.plan("basic", {"tokens": rule(price="1")})
    subscription = platform.subscribe(plan)
    assert platform.event(units=1).json()["revenueAmount"] == "1"
    token = state.read_token(platform.env.pk)
    pro = platform.plan("pro", {"tokens": rule(price="3")})
    from apps.subscriptions.services import subscription_change_plan

    from .conftest import SYSTEM

    with platform.capture(execute=True):
        subscription_change_plan(subscription=subscription, plan=pro, timing="now", actor=SYSTEM)
    assert state.read_token(platform.env.pk) != token
    assert platform.event(units=1).json()["revenueAmount"] == "3"
    assert platform.check()["planKey"] == "pro"


def test_a_step_listed_before_the_one_it_reads_is_refused():
    with pytest.raises(ImproperlyConfigured, match="must come before it"):
        pipeline.load_steps(
            [
                "apps.stripe_meters.ingestion.MeterEventsStep",
                "apps.entitlements.ingestion.EntitlementsStep",
            ]
        )
