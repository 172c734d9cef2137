"""POST /api/events/recost: the dashboard's re-costing through the API, the same service
(audited), run by a real Celery worker; GET /api/events/recost-runs follows it. Another
environment or organization neither sees the runs nor has its events re-priced."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from apps.accounts.models import AuditEntry
from apps.events.models import Event
from tests.conftest import make_tenant

EVENT = {
    "eventName": "chat",
    "customerReferenceId": "cus_u",
    "featureKey": "chat",
    "costInput": {
        "model": "mystery-1",
        "modelProvider": "openai",
        "inputTokens": 1000,
        "outputTokens": 100,
    },
}


def _ingest(client, reference: str) -> int:
    response = client.post(
        "/api/events/ingest",
        {"events": [{**EVENT, "customerReferenceId": reference}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    return int(response.json()["events"][0]["id"])


@pytest.mark.django_db(transaction=True)
def test_recost_prices_unpriced_events_and_the_run_is_listed(catalog, celery_worker):
    tenant, outsider = make_tenant("Acme"), make_tenant("Outsider")
    api = tenant.api()
    mine = _ingest(api, "cus_u")
    theirs = _ingest(outsider.api(), "cus_o")
    live = _ingest(tenant.api(tenant.sk_live), "cus_l")
    override = {
        "provider": "openai",
        "model": "mystery-1",
        "inputCostPerMillion": "1",
        "outputCostPerMillion": "4",
    }
    assert api.post("/api/model-price-overrides", override, format="json").status_code == 201

    queued = api.post("/api/events/recost")
    assert queued.status_code == 202, queued.content
    body = queued.json()
    assert body["status"] == "queued"

    deadline = time.monotonic() + 30
    while True:
        runs = api.get("/api/events/recost-runs", {"since": body["requestedAt"]}).json()
        if runs["items"] and runs["items"][0]["status"] == "succeeded":
            break
        assert time.monotonic() < deadline, runs
        time.sleep(0.3)
    (run,) = runs["items"]
    assert run["eventsNewlyPriced"] == 1
    assert Decimal(run["costChange"]) == Decimal("0.0014")
    assert run["actor"].startswith("api:")
    priced = Event.objects.get(pk=mine)
    assert priced.cost_source == "override_rate"
    assert priced.cost_usd == Decimal("0.0014")  # 1000 x 1 / 1e6 + 100 x 4 / 1e6
    # The request is audited like the dashboard's button, with the key as actor.
    entry = AuditEntry.objects.get(action="events.recost_requested", environment=tenant.test)
    assert entry.actor_key_id is not None and entry.actor_user is None

    # Nobody else's events were touched, and nobody else sees the run.
    assert Event.objects.get(pk=theirs).cost_usd is None
    assert Event.objects.get(pk=live).cost_usd is None
    assert outsider.api().get("/api/events/recost-runs").json()["items"] == []
    assert tenant.api(tenant.sk_live).get("/api/events/recost-runs").json()["items"] == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [{"since": "yesterday"}, {"since": "2026-13-40T00:00:00Z"}, {"limit": "0"}, {"cursor": "x"}],
)
def test_bad_parameters_of_the_run_list_are_400(tenant, query):
    response = tenant.api().get("/api/events/recost-runs", query)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_failed"
