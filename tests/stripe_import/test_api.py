"""The import API: refusals with clear 4xx codes, one job at a time, scopes, and tenancy
(another organization or the other environment sees nothing: 404 or an empty list)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.utils import timezone

from apps.stripe_import.models import ImportedSubscription, ImportJob
from tests.conftest import Tenant
from tests.factories import make_customer, make_key
from tests.stripe_peer.fixtures import StripePeer, connect_environment

from .conftest import JOBS, START, STATUS, SUBSCRIPTIONS, set_mode

pytestmark = pytest.mark.django_db


def error_code(response: Any) -> str:
    return response.json()["error"]["code"]


def test_refused_unless_the_mode_is_import(tenant: Tenant, peer: StripePeer) -> None:
    connect_environment(tenant.test, peer)
    response = tenant.api().post(START)
    assert response.status_code == 409
    assert error_code(response) == "stripe_mode_not_import"
    assert "IMPORT" in response.json()["error"]["message"]
    assert not ImportJob.objects.exists()


def test_refused_unless_stripe_is_connected(tenant: Tenant) -> None:
    set_mode(tenant, "IMPORT")
    response = tenant.api().post(START)
    assert response.status_code == 409
    assert error_code(response) == "stripe_not_connected"
    assert not ImportJob.objects.exists()


def test_start_answers_202_with_a_pending_job(ready: Tenant) -> None:
    response = ready.api().post(START)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "PENDING" and body["phase"] == "QUEUED" and body["percent"] == 0
    assert (body["total"], body["processed"], body["failed"]) == (0, 0, 0)
    status = ready.api().get(STATUS.format(body["jobId"]))
    assert status.status_code == 200 and status.json()["jobId"] == body["jobId"]


def test_one_import_at_a_time_and_a_stale_one_is_replaced(ready: Tenant) -> None:
    first = ready.api().post(START).json()
    again = ready.api().post(START)
    assert again.status_code == 409
    assert error_code(again) == "stripe_import_running"
    assert again.json()["error"]["jobId"] == first["jobId"]

    # Its worker died: nothing moved for longer than the stale limit.
    ImportJob.objects.filter(pk=first["jobId"]).update(
        updated_at=timezone.now() - dt.timedelta(hours=1)
    )
    third = ready.api().post(START)
    assert third.status_code == 202
    old = ready.api().get(STATUS.format(first["jobId"])).json()
    assert old["status"] == "FAILED" and "stopped" in old["error"]


def test_scopes(ready: Tenant) -> None:
    reader = make_key(ready.test, "obs", scopes=["billing.read"]).plaintext
    response = ready.api(reader).post(START)
    assert response.status_code == 403 and error_code(response) == "scope_denied"
    assert ready.api(reader).get(SUBSCRIPTIONS).status_code == 200
    assert ready.api(reader).get(JOBS).status_code == 200
    nothing = make_key(ready.test, "obs", scopes=["events.write"]).plaintext
    assert ready.api(nothing).get(SUBSCRIPTIONS).status_code == 403


def _subscription(environment: Any, reference: str, stripe_id: str, **fields: Any) -> Any:
    customer = make_customer(environment, reference)
    start = dt.datetime(2026, 9, 15, tzinfo=dt.UTC)
    values = {
        "stripe_customer_id": f"cus_{reference}",
        "status": "active",
        "currency": "USD",
        "interval": "month",
        "amount": "30",
        "started_at": start,
        "current_period_start": start,
        "current_period_end": dt.datetime(2026, 10, 15, tzinfo=dt.UTC),
        "revenue_from": start,
        **fields,
    }
    return ImportedSubscription.objects.create(
        environment=environment, customer=customer, stripe_id=stripe_id, **values
    )


def test_tenancy(tenant: Tenant, outsider: Tenant) -> None:
    """Another organization, and the tenant's live environment, see none of it."""
    _subscription(tenant.test, "acme", "sub_test")
    job = ImportJob.objects.create(environment=tenant.test)
    assert len(tenant.api().get(SUBSCRIPTIONS).json()["items"]) == 1
    assert tenant.api().get(STATUS.format(job.pk)).status_code == 200

    for client in (outsider.api(), tenant.api(tenant.sk_live)):
        missing = client.get(STATUS.format(job.pk))
        assert missing.status_code == 404 and error_code(missing) == "not_found"
        assert client.get(SUBSCRIPTIONS).json()["items"] == []
        assert client.get(f"{SUBSCRIPTIONS}?customerReferenceId=acme").json()["items"] == []
        assert client.get(JOBS).json()["items"] == []


def test_subscription_list_filters_and_pages(tenant: Tenant) -> None:
    _subscription(tenant.test, "acme", "sub_1")
    _subscription(
        tenant.test,
        "beta",
        "sub_2",
        status="canceled",
        started_at=dt.datetime(2026, 9, 16, tzinfo=dt.UTC),
        ended_at=dt.datetime(2026, 10, 1, tzinfo=dt.UTC),
        revenue_until=dt.datetime(2026, 10, 1, tzinfo=dt.UTC),
    )
    api = tenant.api()
    first = api.get(f"{SUBSCRIPTIONS}?limit=1").json()
    assert [row["stripeSubscriptionId"] for row in first["items"]] == ["sub_2"]  # newest start
    assert first["hasMore"] is True
    second = api.get(f"{SUBSCRIPTIONS}?limit=1&cursor={first['nextCursor']}").json()
    assert [row["stripeSubscriptionId"] for row in second["items"]] == ["sub_1"]
    assert second["hasMore"] is False and second["nextCursor"] is None

    canceled = api.get(f"{SUBSCRIPTIONS}?status=CANCELED").json()["items"]
    assert [row["customerReferenceId"] for row in canceled] == ["beta"]
    assert canceled[0]["revenueUntil"] == "2026-10-01T00:00:00Z"
    acme = api.get(f"{SUBSCRIPTIONS}?customerReferenceId=acme").json()["items"]
    assert [row["stripeSubscriptionId"] for row in acme] == ["sub_1"]
    assert api.get(f"{SUBSCRIPTIONS}?customerReferenceId=nobody").json()["items"] == []


@pytest.mark.parametrize(
    ("url", "field"),
    [
        (f"{SUBSCRIPTIONS}?status=bogus", "status"),
        (f"{SUBSCRIPTIONS}?cursor=xyz", "cursor"),
        (f"{SUBSCRIPTIONS}?limit=0", "limit"),
        (f"{JOBS}?limit=abc", "limit"),
    ],
)
def test_bad_parameters_are_400(tenant: Tenant, url: str, field: str) -> None:
    response = tenant.api().get(url)
    assert response.status_code == 400, response.content
    assert error_code(response) == "validation_failed"
    assert field in response.json()["error"]["fields"]


def test_unknown_or_malformed_job_ids_are_404(tenant: Tenant) -> None:
    for job_id in (str(uuid.uuid4()), "not-a-uuid", "1"):
        response = tenant.api().get(STATUS.format(job_id))
        assert response.status_code == 404 and error_code(response) == "not_found"


def test_the_schema_describes_the_endpoints(tenant: Tenant, client: Any) -> None:
    schema = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = schema["paths"]
    assert "post" in paths["/api/v1/client/stripe/import/start"]
    assert "get" in paths["/api/v1/client/stripe/import/status/{job_id}"]
    assert "get" in paths["/api/v1/client/stripe/import/subscriptions"]
    assert "get" in paths["/api/v1/client/stripe/import/jobs"]
