"""The simulations API: run (at once or as a job), read, list, cancel, export, preview;
scopes; tenant isolation."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal as D

import pytest

from apps.apikeys import scopes as S
from apps.simulations import services
from apps.simulations.models import Simulation
from apps.simulations.tasks import run_simulation
from tests.factories import make_key
from tests.simulations.conftest import RAISE, WINDOW

pytestmark = pytest.mark.django_db

BODY = {"name": "Raise Pro", "window": WINDOW, "scenarios": [RAISE]}


def post(client, path: str, body: dict) -> object:
    return client.post(path, json.dumps(body), content_type="application/json")


def test_post_answers_at_once_and_the_result_is_stored(tenant, three):
    response = post(tenant.api(), "/api/simulations", BODY)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "completed" and body["progress"] == 100
    assert D(body["result"]["scenarios"][0]["totals"]["billAfter"]) == D("357.00")
    again = tenant.api().get(f"/api/simulations/{body['id']}").json()
    assert again["resultHash"] == body["resultHash"]
    # Same inputs, same hashes.
    second = post(tenant.api(), "/api/simulations", BODY).json()
    assert (second["inputsHash"], second["resultHash"]) == (body["inputsHash"], body["resultHash"])
    assert second["id"] != body["id"]
    listed = tenant.api().get("/api/simulations").json()
    assert [item["id"] for item in listed["items"]] == [second["id"], body["id"]]
    assert listed["items"][0]["result"]["customers"] == []


def test_customers_csv(tenant, three):
    simulation_id = post(tenant.api(), "/api/simulations", BODY).json()["id"]
    response = tenant.api().get(f"/api/simulations/{simulation_id}/customers.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    by_ref = {row["customerReferenceId"]: row for row in rows}
    assert set(by_ref) == {"cus_a", "cus_b", "cus_c"}
    assert (by_ref["cus_c"]["billBefore"], by_ref["cus_c"]["billAfter"]) == ("149.00", "209.00")
    assert "bill_shock" in by_ref["cus_c"]["flags"]


def test_a_large_cohort_is_a_job_with_progress_and_the_task_finishes_it(
    tenant,
    three,
    monkeypatch,
):
    monkeypatch.setattr(services, "SYNC_PERIODS", 0)
    response = post(tenant.api(), "/api/simulations", BODY)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["result"] is None
    assert run_simulation(body["id"]) == "completed"
    assert run_simulation(body["id"]) == None  # noqa: E711  (a finished run is left alone)
    done = tenant.api().get(f"/api/simulations/{body['id']}").json()
    assert done["status"] == "completed" and done["progress"] == 100
    assert D(done["result"]["scenarios"][0]["totals"]["billAfter"]) == D("357.00")


def test_cancel_a_queued_job_and_a_finished_one_is_409(tenant, three, monkeypatch):
    monkeypatch.setattr(services, "SYNC_PERIODS", 0)
    queued = post(tenant.api(), "/api/simulations", BODY).json()
    cancelled = post(tenant.api(), f"/api/simulations/{queued['id']}/cancel", {})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert run_simulation(queued["id"]) is None  # the worker leaves it alone
    assert Simulation.objects.get(pk=queued["id"]).result is None
    again = post(tenant.api(), f"/api/simulations/{queued['id']}/cancel", {})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "simulation_finished"
    csv_response = tenant.api().get(f"/api/simulations/{queued['id']}/customers.csv")
    assert csv_response.status_code == 409


def test_preview_one_customer(tenant, three):
    response = post(
        tenant.api(), "/api/simulations/preview", {**BODY, "customerReferenceId": "cus_b"}
    )
    assert response.status_code == 200, response.content
    (row,) = response.json()["customers"]
    assert row["customerReferenceId"] == "cus_b"
    assert D(row["scenarios"][0]["bill"]) == D("89.00")
    assert Simulation.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scenarios": []}, "scenarios"),
        ({"scenarios": [{"changes": [{"type": "bogus"}]}]}, "scenarios.0.changes.0.type"),
        (
            {"scenarios": [{"changes": [{"type": "plan_base_price", "planKey": "pro"}]}]},
            "scenarios.0.changes.0.amount",
        ),
        (
            {
                "scenarios": [
                    {"changes": [{"type": "plan_base_price", "planKey": "pro", "amount": "x"}]}
                ]
            },
            "scenarios.0.changes.0.amount",
        ),
        ({"window": {"from": "2026-04-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}}, "window.to"),
        ({"cohort": {"type": "band", "band": "purple"}}, "cohort.band"),
        (
            {
                "scenarios": [
                    {
                        "changes": [
                            {
                                "type": "pricing_rule",
                                "planKey": "pro",
                                "featureKey": "tokens",
                                "rule": {"model": "per_unit"},
                            }
                        ]
                    }
                ]
            },
            "scenarios.0.changes.0.rule.pricePerUnit",
        ),
        ({"surprise": 1}, "surprise"),
        ({"billShockThresholdPct": 20}, "billShockThresholdPct"),  # a number, not a string
        ({"name": None}, "name"),
        (
            {
                "scenarios": [
                    {
                        "changes": [
                            {
                                "type": "pricing_rule",
                                "planKey": "pro",
                                "featureKey": "tokens",
                                "rule": {"model": [None]},
                            }
                        ]
                    }
                ]
            },
            "scenarios.0.changes.0.rule.model",
        ),
    ],
)
def test_bad_bodies_are_400_naming_the_field(tenant, three, body, field):
    full = {"scenarios": [{"changes": []}], **body}
    response = post(tenant.api(), "/api/simulations", full)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]


def test_scopes(tenant, three):
    reader = make_key(tenant.test, "obs", scopes=[S.SIMULATIONS_READ]).plaintext
    writer = make_key(tenant.test, "obs", scopes=[S.SIMULATIONS_WRITE]).plaintext
    other = make_key(tenant.test, "obs", scopes=[S.USAGE_READ]).plaintext
    assert post(tenant.api(reader), "/api/simulations", BODY).status_code == 403
    created = post(tenant.api(writer), "/api/simulations", BODY)
    assert created.status_code == 201
    simulation_id = created.json()["id"]
    assert tenant.api(writer).get(f"/api/simulations/{simulation_id}").status_code == 403
    assert tenant.api(reader).get(f"/api/simulations/{simulation_id}").status_code == 200
    assert tenant.api(other).get("/api/simulations").status_code == 403


def test_outsiders_and_the_other_environment_see_nothing(tenant, outsider, three):
    simulation_id = post(tenant.api(), "/api/simulations", BODY).json()["id"]
    for client in (outsider.api(), tenant.api(tenant.sk_live)):
        assert client.get(f"/api/simulations/{simulation_id}").status_code == 404
        assert client.get(f"/api/simulations/{simulation_id}/customers.csv").status_code == 404
        assert post(client, f"/api/simulations/{simulation_id}/cancel", {}).status_code == 404
        assert client.get("/api/simulations").json()["items"] == []
    # The outsider's own run over the same window finds none of the tenant's customers.
    theirs = post(outsider.api(), "/api/simulations", {**BODY, "scenarios": [{"changes": []}]})
    assert theirs.status_code == 201 and theirs.json()["result"]["customers"] == []
    preview = post(
        outsider.api(),
        "/api/simulations/preview",
        {**BODY, "scenarios": [{"changes": []}], "customerReferenceId": "cus_b"},
    )
    assert preview.json()["customers"] == []
