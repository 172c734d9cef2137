"""The alerts API: rules as the public page implies (GET/POST /api/alerts, DELETE
/api/alerts/{id}), fired alerts and acknowledgement, scopes, tenant isolation."""

from __future__ import annotations

import pytest

from apps.alerts.models import AlertRule
from apps.alerts.services import endpoint_create
from apps.alerts.tasks import evaluate_alerts
from apps.core.tenancy import scoped
from tests.factories import make_key

pytestmark = pytest.mark.django_db

RULE = {
    "name": "Margin under 20 % per customer",
    "metric": "margin_percent",
    "scope": "customer",
    "window": "7d",
    "operator": "lt",
    "thresholds": [{"value": "20", "severity": "warning"}, {"value": 0, "severity": "critical"}],
    "channels": ["dashboard", "webhook"],
}


def test_rules_are_listed_created_changed_and_deleted(tenant):
    api = tenant.api()
    listed = api.get("/api/alerts").json()
    assert sorted(r["name"] for r in listed["items"]) == [
        "A customer's 7-day margin below zero",
        "API key budget",
        "Daily cost spike",
        "Events of a model with no price",
    ]
    assert all(r["isDefault"] for r in listed["items"])
    created = api.post("/api/alerts", RULE, format="json")
    assert created.status_code == 201, created.json()
    rule = created.json()
    assert rule["thresholds"] == [
        {"value": "0", "severity": "critical"},
        {"value": "20", "severity": "warning"},
    ]
    assert rule["channels"] == ["dashboard", "webhook"]
    assert rule["isDefault"] is False
    assert api.get(f"/api/alerts/{rule['id']}").json()["name"] == RULE["name"]
    turned_off = api.patch(f"/api/alerts/{rule['id']}", {"enabled": False}, format="json")
    assert turned_off.status_code == 200 and turned_off.json()["enabled"] is False
    assert api.delete(f"/api/alerts/{rule['id']}").status_code == 204
    assert api.get(f"/api/alerts/{rule['id']}").status_code == 404
    assert len(api.get("/api/alerts").json()["items"]) == 4


def test_one_threshold_and_a_subject_by_its_public_name(tenant):
    key = make_key(tenant.test, "obs", scopes=["events.write"], budget_cents=500)
    answer = tenant.api().post(
        "/api/alerts",
        {
            "name": "this key",
            "metric": "key_budget_percent",
            "threshold": "50",
            "apiKeyId": str(key.key.pk),
        },
        format="json",
    )
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert (body["scope"], body["window"], body["apiKeyId"]) == (
        "api_key",
        "budget_period",
        str(key.key.pk),
    )
    assert body["thresholds"] == [{"value": "50", "severity": "warning"}]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"metric": "vibes"}, "metric"),
        ({"thresholds": []}, "thresholds"),
        ({"thresholds": [{"value": "x"}]}, "thresholds"),
        ({"metric": "key_budget_percent", "scope": "customer"}, "metric"),
        ({"window": "budget_period"}, "window"),
        ({"metric": "cost_spike", "window": "calendar_month"}, "window"),
        ({"customerReferenceId": "cus_nobody"}, "customerReferenceId"),
        ({"threshold": "1"}, "threshold"),
        ({"channels": ["pager"]}, "channels"),
        ({"renotifyMinutes": 0}, "renotifyMinutes"),
    ],
)
def test_bad_rules_are_400_naming_the_field(tenant, change, field):
    answer = tenant.api().post("/api/alerts", {**RULE, **change}, format="json")
    assert answer.status_code == 400, answer.json()
    error = answer.json()["error"]
    assert error["code"] == "validation_failed"
    assert any(name.startswith(field) for name in error["fields"]), error


def test_scopes_decide_who_reads_and_who_writes(tenant):
    reader = make_key(tenant.test, "obs", scopes=["alerts.read"]).plaintext
    other = make_key(tenant.test, "obs", scopes=["usage.read"]).plaintext
    assert tenant.api(reader).get("/api/alerts").status_code == 200
    denied = tenant.api(reader).post("/api/alerts", RULE, format="json")
    assert denied.status_code == 403
    assert denied.json()["error"]["requiredScope"] == "alerts.write"
    assert tenant.api(other).get("/api/fired-alerts").status_code == 403
    assert tenant.api(other).get("/api/alert-webhooks").status_code == 403


def test_the_unpriced_model_alert_reaches_the_inbox_and_leaves_it_when_acknowledged(tenant):
    api = tenant.api()
    sent = api.post(
        "/api/events/ingest",
        {
            "events": [
                {
                    "eventName": "chat",
                    "customerReferenceId": "cus_1",
                    "featureKey": "chat",
                    "model": "no-such-model-xyz",
                    "inputTokens": 100,
                    "outputTokens": 50,
                }
            ]
        },
        format="json",
    )
    assert sent.status_code in (200, 201, 207), sent.json()
    evaluate_alerts()  # the minute's beat task: defaults, then every rule
    inbox = api.get("/api/fired-alerts?unacknowledged=true").json()["items"]
    (alert,) = inbox
    assert alert["type"] == "alert.triggered"
    assert alert["metric"] == "unpriced_events"
    assert alert["payload"]["subject"]["model"] == "no-such-model-xyz"
    assert alert["payload"]["observed"] == "1"
    acked = api.post(f"/api/fired-alerts/{alert['id']}/acknowledge")
    assert acked.status_code == 200 and acked.json()["acknowledgedAt"]
    assert api.get("/api/fired-alerts?unacknowledged=true").json()["items"] == []
    assert len(api.get("/api/fired-alerts").json()["items"]) == 1
    evaluate_alerts()  # still unpriced: no second alert
    assert len(api.get("/api/fired-alerts").json()["items"]) == 1


def test_another_tenant_sees_nothing_and_reaches_nothing(tenant, outsider):
    api = tenant.api()
    rule = api.post("/api/alerts", RULE, format="json").json()
    made = endpoint_create(environment=tenant.test, url="https://hooks.example.com/x")
    spy = outsider.api()
    live = tenant.api(tenant.sk_live)
    for client in (spy, live):
        assert client.get(f"/api/alerts/{rule['id']}").status_code == 404
        assert client.delete(f"/api/alerts/{rule['id']}").status_code == 404
        assert (
            client.patch(f"/api/alerts/{rule['id']}", {"enabled": False}, format="json").status_code
            == 404
        )
        assert rule["id"] not in {r["id"] for r in client.get("/api/alerts").json()["items"]}
        assert client.get(f"/api/alert-webhooks/{made.endpoint.pk}").status_code == 404
        assert client.post(f"/api/alert-webhooks/{made.endpoint.pk}/rotate").status_code == 404
        assert client.post(f"/api/alert-webhooks/{made.endpoint.pk}/test").status_code == 404
        assert client.get(f"/api/alert-webhooks/{made.endpoint.pk}/deliveries").status_code == 404
        assert client.get("/api/alert-webhooks").json()["items"] == []
    assert scoped(AlertRule, tenant.test).get(pk=rule["id"]).enabled is True


def test_an_outsider_cannot_acknowledge_or_replay(tenant, outsider):
    api = tenant.api()
    api.post(
        "/api/events/ingest",
        {
            "events": [
                {
                    "eventName": "chat",
                    "customerReferenceId": "cus_1",
                    "featureKey": "chat",
                    "model": "no-such-model-xyz",
                    "inputTokens": 1,
                    "outputTokens": 1,
                }
            ]
        },
        format="json",
    )
    evaluate_alerts()
    (alert,) = api.get("/api/fired-alerts").json()["items"]
    assert outsider.api().post(f"/api/fired-alerts/{alert['id']}/acknowledge").status_code == 404
    assert outsider.api().get("/api/fired-alerts").json()["items"] == []
    assert api.get("/api/fired-alerts?unacknowledged=true").json()["items"] != []


def test_a_webhook_endpoint_secret_is_shown_once(tenant):
    api = tenant.api()
    created = api.post(
        "/api/alert-webhooks", {"url": "https://hooks.example.com/tanso"}, format="json"
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert body["secretHint"] == body["secret"][-4:]
    shown = api.get(f"/api/alert-webhooks/{body['id']}").json()
    assert "secret" not in shown
    rotated = api.post(f"/api/alert-webhooks/{body['id']}/rotate").json()
    assert rotated["secret"] != body["secret"] and rotated["previousSecretExpiresAt"]
    listed = api.get("/api/alert-webhooks").json()["items"]
    assert [e["id"] for e in listed] == [body["id"]] and "secret" not in listed[0]


def test_the_beat_evaluates_alerts_every_minute(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["evaluate-alerts"]
    assert entry == {"task": "apps.alerts.tasks.evaluate_alerts", "schedule": 60.0}
