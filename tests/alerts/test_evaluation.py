"""Rules evaluated against the real ledger: budget crossings fire once, resolve once after
the period resets and fire again; hysteresis; cost spikes with their baseline; the
unpriced-model alert in the inbox; another organization's rules never fire here."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from apps.alerts.evaluator import environment_evaluate, rule_evaluate
from apps.alerts.models import AlertRule, AlertState, Metric, Notification, Operator, Scope, Window
from apps.alerts.services import defaults_ensure, rule_create, rule_update
from apps.core.tenancy import scoped
from tests.alerts.helpers import ingest, ingest_daily
from tests.factories import make_key

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC)


def budget_rule(env, **extra) -> AlertRule:
    return rule_create(
        environment=env,
        name="budget",
        metric=Metric.KEY_BUDGET_PERCENT,
        scope=Scope.API_KEY,
        window=Window.BUDGET_PERIOD,
        operator=Operator.GTE,
        thresholds=[{"value": "80", "severity": "warning"}],
        **extra,
    )


def notes(env, kind=None):
    rows = scoped(Notification, env).order_by("created_at")
    return list(rows.filter(kind=kind) if kind else rows)


def test_a_budget_crossing_fires_once_resolves_after_reset_and_fires_again(tenant):
    env = tenant.test
    key = make_key(env, "obs", scopes=["events.write"], budget_cents=1000, budget_period="day")
    rule = budget_rule(env)
    ingest(env, cost="7.00", at=NOON - dt.timedelta(hours=1), key_id=key.key.pk)
    assert rule_evaluate(rule=rule, now=NOON) == []  # 70 %
    ingest(env, cost="1.50", at=NOON - dt.timedelta(minutes=30), key_id=key.key.pk)
    fired = rule_evaluate(rule=rule, now=NOON)  # 85 %
    assert [n.kind for n in fired] == ["alert.triggered"]
    payload = fired[0].payload
    assert payload["observed"] == "85"
    assert payload["threshold"] == "80"
    assert payload["subject"]["apiKeyId"] == str(key.key.pk)
    assert payload["money"]["cost"] == "8.5"
    assert payload["window"]["kind"] == "budget_period"
    assert all(value not in (None, "", {}, []) for value in payload.values())
    # Still above: no second notification, however often it is evaluated.
    assert rule_evaluate(rule=rule, now=NOON + dt.timedelta(minutes=5)) == []
    # The next day's budget window is empty: exactly one alert.resolved.
    tomorrow = NOON + dt.timedelta(days=1)
    assert [n.kind for n in rule_evaluate(rule=rule, now=tomorrow)] == ["alert.resolved"]
    assert rule_evaluate(rule=rule, now=tomorrow) == []
    # Crossing again fires again.
    ingest(env, cost="9", at=tomorrow - dt.timedelta(minutes=10), key_id=key.key.pk)
    assert [n.kind for n in rule_evaluate(rule=rule, now=tomorrow)] == ["alert.triggered"]
    kinds = sorted(n.kind for n in notes(env))
    assert kinds == ["alert.resolved", "alert.triggered", "alert.triggered"]
    state = scoped(AlertState, env).get()
    assert state.transitions == 3 and state.status == "firing"


def test_a_firing_state_resolves_only_past_the_recovery_margin(tenant):
    env = tenant.test
    rule = rule_create(
        environment=env,
        name="cost",
        metric=Metric.COST,
        scope=Scope.ENVIRONMENT,
        window=Window.DAY,
        operator=Operator.GTE,
        thresholds=[{"value": "10", "severity": "warning"}],
        recovery_margin=Decimal(2),
    )
    ingest(env, cost="11", at=NOON - dt.timedelta(hours=20))
    assert len(rule_evaluate(rule=rule, now=NOON)) == 1
    # 20 hours later the 11 has left the window only at NOON+4h; at 9 (via a newer
    # event) the value is below 10 but not below 8: nothing happens.
    ingest(env, cost="9", at=NOON + dt.timedelta(hours=4, minutes=30))
    assert rule_evaluate(rule=rule, now=NOON + dt.timedelta(hours=5)) == []
    assert scoped(AlertState, env).get().status == "firing"
    # Once the 9 also leaves the window the value is 0: resolved.
    later = NOON + dt.timedelta(days=2)
    assert [n.kind for n in rule_evaluate(rule=rule, now=later)] == ["alert.resolved"]


def test_a_cost_spike_fires_with_its_baseline_and_a_small_rise_does_not(tenant, outsider):
    env = tenant.test
    rule = rule_create(
        environment=env,
        name="spike",
        metric=Metric.COST_SPIKE,
        scope=Scope.ENVIRONMENT,
        window=Window.DAY,
        operator=Operator.GTE,
        thresholds=[{"value": "2", "severity": "warning"}],
    )
    ingest_daily(env, cost="10", end=NOON, days=28)
    ingest(env, cost="15", at=NOON - dt.timedelta(hours=1))
    assert rule_evaluate(rule=rule, now=NOON) == []
    ingest(env, cost="25", at=NOON - dt.timedelta(hours=2))  # the day is at $40 now
    fired = rule_evaluate(rule=rule, now=NOON)
    assert len(fired) == 1
    payload = fired[0].payload
    assert payload["baseline"] == "10"
    assert payload["cost"] == "40"
    assert payload["observed"] == "4"
    assert payload["threshold"] == "2"


def test_a_spike_needs_seven_prior_windows_and_the_floor(tenant):
    env = tenant.test
    rule = rule_create(
        environment=env,
        name="spike",
        metric=Metric.COST_SPIKE,
        window=Window.DAY,
        thresholds=[{"value": "2", "severity": "warning"}],
    )
    ingest_daily(env, cost="1", end=NOON, days=6)  # six prior days only
    ingest(env, cost="100", at=NOON - dt.timedelta(hours=1))
    assert rule_evaluate(rule=rule, now=NOON) == []
    ingest(env, cost="1", at=NOON - dt.timedelta(days=7, hours=1))
    assert len(rule_evaluate(rule=rule, now=NOON)) == 1
    # A tiny environment: 4x its median but under the $5 floor.
    other = rule_create(
        environment=tenant.live,
        name="spike",
        metric=Metric.COST_SPIKE,
        window=Window.DAY,
        thresholds=[{"value": "2", "severity": "warning"}],
    )
    ingest_daily(tenant.live, cost="1", end=NOON, days=9)
    ingest(tenant.live, cost="4", at=NOON - dt.timedelta(hours=1))
    assert rule_evaluate(rule=other, now=NOON) == []


def test_the_defaults_exist_once_per_environment_and_can_be_turned_off(tenant):
    env = tenant.test
    assert defaults_ensure(environment=env) is True
    assert defaults_ensure(environment=env) is False
    keys = sorted(scoped(AlertRule, env).values_list("default_key", flat=True))
    assert keys == ["cost_spike", "customer_margin", "key_budget", "unpriced"]
    scoped(AlertRule, env).filter(default_key="unpriced").update(enabled=False)
    ingest(env, cost=None, at=NOON - dt.timedelta(minutes=5), model="mystery-model-x")
    assert environment_evaluate(environment_id=env.pk, now=NOON) == 0
    # Deleted defaults stay deleted.
    scoped(AlertRule, env).filter(default_key="cost_spike").delete()
    assert defaults_ensure(environment=env) is False
    assert scoped(AlertRule, env).count() == 3


def test_the_default_margin_rule_fires_for_a_customer_losing_money(tenant):
    env = tenant.test
    defaults_ensure(environment=env)
    ingest(env, cost="3", revenue="1", at=NOON - dt.timedelta(days=2), customer="cus_loss")
    ingest(env, cost="1", revenue="5", at=NOON - dt.timedelta(days=2), customer="cus_fine")
    assert environment_evaluate(environment_id=env.pk, now=NOON) == 1
    (note,) = notes(env)
    assert note.payload["subject"] == {"customerReferenceId": "cus_loss"}
    money = note.payload["money"]
    assert (money["cost"], money["revenue"], money["margin"]) == ("3", "1", "-2")
    assert money["marginAtTarget"] == "0.7"  # 70 % of $1 at the default target


def test_another_organizations_rules_never_fire_on_this_ones_data(tenant, outsider):
    env = tenant.test
    spy = rule_create(
        environment=outsider.test,
        name="spy",
        metric=Metric.COST,
        window=Window.DAY,
        operator=Operator.GT,
        thresholds=[{"value": "0", "severity": "info"}],
    )
    mine = rule_create(
        environment=tenant.live,
        name="live only",
        metric=Metric.COST,
        window=Window.DAY,
        operator=Operator.GT,
        thresholds=[{"value": "0", "severity": "info"}],
    )
    ingest(env, cost="50", at=NOON - dt.timedelta(hours=1))
    assert rule_evaluate(rule=spy, now=NOON) == []
    assert rule_evaluate(rule=mine, now=NOON) == []  # the other environment of the tenant
    assert environment_evaluate(environment_id=outsider.test.pk, now=NOON) == 0
    assert notes(outsider.test) == [] and notes(tenant.live) == []


def test_a_firing_alert_is_notified_again_after_its_renotify_interval(tenant):
    env = tenant.test
    rule = rule_create(
        environment=env,
        name="cost",
        metric=Metric.COST,
        window=Window.WEEK,
        operator=Operator.GT,
        thresholds=[{"value": "1", "severity": "warning"}],
        renotify_minutes=30,
    )
    ingest(env, cost="2", at=NOON - dt.timedelta(hours=1))
    assert len(rule_evaluate(rule=rule, now=NOON)) == 1
    assert rule_evaluate(rule=rule, now=NOON + dt.timedelta(minutes=20)) == []
    again = rule_evaluate(rule=rule, now=NOON + dt.timedelta(minutes=31))
    assert [n.kind for n in again] == ["alert.triggered"]
    assert rule_evaluate(rule=rule, now=NOON + dt.timedelta(minutes=40)) == []
    state = scoped(AlertState, env).get()
    assert state.transitions == 1  # a reminder is not a transition


def test_changing_a_rules_thresholds_starts_its_states_afresh(tenant):
    env = tenant.test
    rule = rule_create(
        environment=env,
        name="cost",
        metric=Metric.COST,
        window=Window.WEEK,
        operator=Operator.GT,
        thresholds=[{"value": "1", "severity": "warning"}],
    )
    ingest(env, cost="2", at=NOON - dt.timedelta(hours=1))
    assert len(rule_evaluate(rule=rule, now=NOON)) == 1
    rule_update(rule=rule, changes={"thresholds": [{"value": "5", "severity": "warning"}]})
    assert not scoped(AlertState, env).exists()
    assert rule_evaluate(rule=rule, now=NOON) == []
