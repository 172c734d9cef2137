"""The recommendations API: ranked list, compute (at once, or a job with progress),
decisions, the comparable-models table; tenant isolation and scopes."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from apps.apikeys import scopes as S
from apps.customers.models import Customer
from tests.factories import make_key

from .conftest import COMPUTE, LIST, spend

pytestmark = pytest.mark.django_db
PAIRS = "/api/recommendations/comparable-models"


def _computed(client) -> dict:
    response = client.post(COMPUTE, {}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def _seed(tenant) -> None:
    client = tenant.api()
    spend(client, "cus_low", "chat", cost="90", revenue="100")  # 60.00 at stake
    spend(client, "cus_worse", "search", cost="50", revenue="10")  # 47.00 at stake


def test_compute_answers_at_once_and_the_list_ranks_by_money_at_stake(tenant, catalog):
    _seed(tenant)
    client = tenant.api()
    run = _computed(client)
    assert run["status"] == "succeeded"
    assert (run["stepsDone"], run["stepsTotal"]) == (6, 6)
    # Open findings: two customers and two features (60 + 47) x 2.
    assert run["findings"] == 4
    assert Decimal(run["moneyAtStakeMonthly"]) == Decimal("214.00")
    body = client.get(LIST).json()
    stakes = [item["moneyAtStakeMonthly"] for item in body["items"]]
    assert stakes == ["60.00", "60.00", "47.00", "47.00"]
    assert body["hasMore"] is False
    by_subject = {item["subject"]: item for item in body["items"]}
    low = by_subject["customer:cus_low"]
    assert (low["kind"], low["status"], low["direction"]) == (
        "customer_margin",
        "open",
        "protect_margin",
    )
    assert low["currency"] == "USD"
    assert low["action"]["type"] == "simulate"
    assert client.get(f"{LIST}/{low['id']}").json()["id"] == low["id"]
    # Filters and pages.
    kinds = client.get(LIST, {"kind": "feature_margin"}).json()["items"]
    assert {item["subject"] for item in kinds} == {"feature:chat", "feature:search"}
    first = client.get(LIST, {"limit": 3}).json()
    assert first["hasMore"] is True and len(first["items"]) == 3
    rest = client.get(LIST, {"limit": 3, "cursor": first["nextCursor"]}).json()
    assert [i["id"] for i in first["items"] + rest["items"]] == [i["id"] for i in body["items"]]


def test_decisions_through_the_api(tenant, catalog):
    _seed(tenant)
    client = tenant.api()
    _computed(client)
    item = client.get(LIST, {"kind": "customer_margin"}).json()["items"][0]
    url = f"{LIST}/{item['id']}"
    dismissed = client.post(f"{url}/dismiss", {}, format="json")
    assert dismissed.status_code == 200, dismissed.content
    assert dismissed.json()["status"] == "dismissed"
    assert dismissed.json()["decidedAtStake"] == "60.00"
    assert item["id"] not in {i["id"] for i in client.get(LIST).json()["items"]}
    assert [i["id"] for i in client.get(LIST, {"status": "dismissed"}).json()["items"]] == [
        item["id"]
    ]
    # A recompute keeps the decision (the money at stake has not doubled).
    _computed(client)
    assert client.get(url).json()["status"] == "dismissed"
    snoozed = client.post(f"{url}/snooze", {"days": 7}, format="json").json()
    assert snoozed["status"] == "snoozed" and snoozed["snoozedUntil"]
    assert client.post(f"{url}/apply", {}, format="json").json()["status"] == "applied"
    assert client.post(f"{url}/reopen", {}, format="json").json()["status"] == "open"


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("get", LIST, {"status": "everything"}),
        ("get", LIST, {"kind": "nope"}),
        ("get", LIST, {"cursor": "garbage"}),
        ("get", LIST, {"limit": "0"}),
        ("post", COMPUTE, {"windowDays": 0}),
        ("post", COMPUTE, {"windowDays": "many"}),
        ("post", COMPUTE, {"windowDays": 401}),
        ("post", COMPUTE, {"windowDays": "5"}),
        ("post", COMPUTE, {"windowDays": True}),
        ("post", COMPUTE, {"windowDays": "2.5"}),
        (
            "post",
            PAIRS,
            {
                "fromProvider": "a",
                "fromModel": "b",
                "toProvider": "c",
                "toModel": "d",
                "enabled": 0,
            },
        ),
        ("post", PAIRS, {"fromProvider": "a", "fromModel": "b", "toProvider": "c", "toModel": ""}),
    ],
)
def test_bad_input_is_a_400(tenant, method, path, params):
    client = tenant.api()
    if method == "get":
        response = client.get(path, params)
    else:
        response = client.post(path, params, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_failed"


def test_bad_snooze_and_unknown_ids(tenant, catalog):
    _seed(tenant)
    client = tenant.api()
    _computed(client)
    item = client.get(LIST).json()["items"][0]
    for body in ({}, {"days": 0}, {"days": 366}, {"days": "x"}):
        response = client.post(f"{LIST}/{item['id']}/snooze", body, format="json")
        assert response.status_code == 400, (body, response.content)
    for url in (f"{LIST}/not-a-uuid", f"{LIST}/00000000-0000-0000-0000-000000000000"):
        assert client.get(url).status_code == 404
        assert client.post(f"{url}/dismiss", {}, format="json").status_code == 404


def test_a_resolved_finding_cannot_be_decided(tenant, catalog):
    _seed(tenant)
    client = tenant.api()
    _computed(client)
    item = client.get(LIST, {"kind": "customer_margin"}).json()["items"][0]
    client.patch("/api/analytics/settings", {"targetMarginPct": "0"}, format="json")
    spend(client, "cus_low", "chat", cost="0", revenue="1000")
    spend(client, "cus_worse", "search", cost="0", revenue="1000")
    _computed(client)
    assert client.get(f"{LIST}/{item['id']}").json()["status"] == "resolved"
    response = client.post(f"{LIST}/{item['id']}/dismiss", {}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "recommendation_resolved"


def test_outsiders_and_the_other_environment_see_nothing(tenant, outsider, catalog):
    _seed(tenant)
    _computed(tenant.api())
    item = tenant.api().get(LIST).json()["items"][0]
    for client in (outsider.api(), tenant.api(tenant.sk_live)):
        assert client.get(LIST, {"status": "all"}).json()["items"] == []
        assert client.get(f"{LIST}/{item['id']}").status_code == 404
        for action in ("dismiss", "apply", "reopen"):
            response = client.post(f"{LIST}/{item['id']}/{action}", {}, format="json")
            assert response.status_code == 404
        response = client.post(f"{LIST}/{item['id']}/snooze", {"days": 1}, format="json")
        assert response.status_code == 404
    # The outsider's own compute finds nothing of the tenant's.
    assert _computed(outsider.api())["findings"] == 0
    run = _computed(tenant.api())
    assert outsider.api().get(f"{LIST}/compute-runs/{run['id']}").status_code == 404
    assert tenant.api().get(f"{LIST}/{item['id']}").json()["status"] == "open"


def test_each_key_does_what_its_scopes_allow(tenant, catalog):
    _seed(tenant)
    _computed(tenant.api())
    item = tenant.api().get(LIST).json()["items"][0]
    reader = tenant.api(make_key(tenant.test, "obs", scopes=[S.RECOMMENDATIONS_READ]).plaintext)
    assert reader.get(LIST).status_code == 200
    assert reader.post(COMPUTE, {}, format="json").status_code == 200
    denied = reader.post(f"{LIST}/{item['id']}/dismiss", {}, format="json")
    assert denied.status_code == 403
    assert denied.json()["error"]["requiredScope"] == "recommendations.write"
    assert reader.post(PAIRS, {}, format="json").status_code == 403
    writer = tenant.api(make_key(tenant.test, "obs", scopes=[S.RECOMMENDATIONS_WRITE]).plaintext)
    assert writer.get(LIST).status_code == 403
    assert writer.post(f"{LIST}/{item['id']}/dismiss", {}, format="json").status_code == 200
    other = tenant.api(make_key(tenant.test, "obs", scopes=[S.USAGE_READ]).plaintext)
    assert other.get(LIST).json()["error"]["requiredScope"] == "recommendations.read"
    customer = Customer.objects.for_env(tenant.test).get(reference_id="cus_low")
    pinned = tenant.api(make_key(tenant.test, "ck", customer=customer, scopes=["read"]).plaintext)
    assert pinned.get(LIST).json()["error"]["code"] == "forbidden"


def test_the_comparable_models_table_is_editable(tenant, outsider, catalog):
    client = tenant.api()
    spend(client, "cus_a", "chat", cost="1", revenue="100")
    from .conftest import at, event, ingest

    ingest(
        client,
        event("cus_a", "chat", when=at(2), model="gpt-4o", inputTokens=1_000_000),
    )
    items = client.get(PAIRS).json()["items"]
    default = {
        "id": None,
        "fromProvider": "openai",
        "fromModel": "gpt-4o",
        "toProvider": "openai",
        "toModel": "gpt-4o-mini",
        "enabled": True,
        "source": "default",
        "note": "the small model of the same generation",
    }
    assert default in items
    _computed(client)
    assert len(client.get(LIST, {"kind": "cheaper_model"}).json()["items"]) == 1
    # Hidden for this environment: the advice no longer offers it.
    pair = {k: default[k] for k in ("fromProvider", "fromModel", "toProvider", "toModel")}
    hidden = client.post(PAIRS, {**pair, "enabled": False}, format="json")
    assert hidden.status_code == 200, hidden.content
    # Still a shipped pair, hidden by the environment's own row.
    assert hidden.json()["enabled"] is False and hidden.json()["source"] == "default"
    assert hidden.json()["id"] is not None
    assert hidden.json() in client.get(PAIRS).json()["items"]
    _computed(client)
    assert client.get(LIST, {"kind": "cheaper_model"}).json()["items"] == []
    # The outsider still has the default, and cannot remove the tenant's row.
    assert default in outsider.api().get(PAIRS).json()["items"]
    row_id = hidden.json()["id"]
    assert outsider.api().delete(f"{PAIRS}/{row_id}").status_code == 404
    assert client.delete(f"{PAIRS}/{row_id}").status_code == 204
    _computed(client)
    assert len(client.get(LIST, {"kind": "cheaper_model"}).json()["items"]) == 1
    # A pair of the environment's own.
    added = client.post(
        PAIRS,
        {
            "fromProvider": "OpenAI",
            "fromModel": "gpt-4o",
            "toProvider": "anthropic",
            "toModel": "claude-sonnet-4",
        },
        format="json",
    )
    assert added.json()["source"] == "environment" and added.json()["fromProvider"] == "openai"


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_large_environment_computes_in_a_job_with_progress(
    tenant, catalog, celery_worker, settings
):
    settings.RECOMMENDATIONS_SYNC_MAX_EVENTS = 0
    _seed(tenant)
    client = tenant.api()
    response = client.post(COMPUTE, {"windowDays": 30}, format="json")
    assert response.status_code == 202, response.content
    run = response.json()
    assert run["status"] == "queued" and run["stepsTotal"] == 6
    deadline = time.monotonic() + 30
    while run["status"] in {"queued", "running"} and time.monotonic() < deadline:
        time.sleep(0.2)
        run = client.get(f"{LIST}/compute-runs/{run['id']}").json()
    assert run["status"] == "succeeded", run
    assert run["stepsDone"] == 6 and run["findings"] == 4
    assert len(client.get(LIST).json()["items"]) == 4


def test_compute_takes_no_body_or_an_object(tenant):
    client = tenant.api()
    assert client.post(COMPUTE).status_code == 200
    response = client.post(COMPUTE, "null", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_failed"
