"""The import against a real Stripe peer (localstripe) on the real Celery worker: customers
matched or created, products, prices and subscriptions recorded; a second run updates and
never duplicates; the job reports its progress; nothing is written to Stripe."""

from __future__ import annotations

from typing import Any

import pytest

from apps.customers.models import Customer
from apps.stripe_import.models import (
    ImportedCustomer,
    ImportedPrice,
    ImportedProduct,
    ImportedSubscription,
)
from tests.conftest import Tenant
from tests.stripe_peer.fixtures import StripePeer

from .conftest import (
    SUBSCRIPTIONS,
    importing,
    monthly_plan,
    run_import,
    stripe_customer,
    subscribe,
    ts,
)

pytestmark = pytest.mark.usefixtures("celery_worker")


def _customer(tenant: Tenant, reference: str, **fields: Any) -> None:
    response = tenant.api().post(
        "/api/v1/client/customers", {"customerReferenceId": reference, **fields}, format="json"
    )
    assert response.status_code == 201, response.content


def _ingest(tenant: Tenant, *events: dict[str, Any]) -> None:
    response = tenant.api().post("/api/events/ingest", {"events": list(events)}, format="json")
    assert response.status_code == 200, response.content


def _stripe_counts(client: Any) -> tuple[int, int, int, int]:
    return (
        len(client.v1.customers.list(params={"limit": 100}).data),
        len(client.v1.products.list(params={"limit": 100}).data),
        len(client.v1.plans.list(params={"limit": 100}).data),
        len(client.v1.subscriptions.list(params={"status": "all", "limit": 100}).data),
    )


def test_import_matches_creates_and_records(tenant: Tenant, peer: StripePeer) -> None:
    stripe = importing(tenant, peer)
    # Five Stripe customers, matched five ways.
    a = stripe_customer(stripe, email="ops@acme.test", metadata={"customerReferenceId": "acme"})
    b = stripe_customer(stripe, name="Beta")
    c = stripe_customer(stripe, name="Gamma")
    d = stripe_customer(stripe, name="Delta")
    e = stripe_customer(stripe, email="new@example.test", name="Epsilon Ltd")
    _customer(tenant, "acme")  # by the Stripe metadata's customerReferenceId
    _customer(tenant, "beta", stripeCustomerId=b.id)  # by our stripeCustomerId
    _customer(tenant, "gamma", metadata={"stripe_customer_id": c.id})  # by our metadata
    _ingest(  # "delta" exists only through an event whose meta names its Stripe customer
        tenant,
        {
            "eventName": "chat",
            "customerReferenceId": "delta",
            "featureKey": "chat",
            "costAmount": "0.5",
            "meta": {"stripe_customer_id": d.id},
        },
    )
    pro, euro = monthly_plan(stripe, 3000), monthly_plan(stripe, 1500, "eur")
    subscribe(stripe, a, pro, quantity=2, start=ts(2026, 9, 15))
    subscribe(stripe, e, euro, start=ts(2026, 10, 1))
    ended = subscribe(stripe, b, pro, start=ts(2026, 8, 1))
    stripe.v1.subscriptions.cancel(ended.id)
    before = _stripe_counts(stripe)

    job = run_import(tenant)

    assert job["status"] == "COMPLETED", job
    assert job["phase"] == "DONE" and job["percent"] == 100
    # 5 customers, 2 products, 2 plans, 3 subscriptions: all read, all recorded.
    assert (job["total"], job["processed"], job["failed"]) == (12, 12, 0)
    assert job["counts"]["customers"] == {"read": 5, "matched": 4, "created": 1}
    assert job["counts"]["products"] == {"read": 2, "recorded": 2}
    assert job["counts"]["prices"]["recorded"] == 2
    assert job["counts"]["subscriptions"] == {"read": 3, "earning": 3}
    assert job["startedAt"] and job["finishedAt"] and job["errors"] == [] and job["error"] is None

    matched = dict(
        ImportedCustomer.objects.filter(environment=tenant.test).values_list(
            "stripe_id", "matched_by"
        )
    )
    assert matched == {
        a.id: "reference",
        b.id: "stripe_customer_id",
        c.id: "metadata",
        d.id: "events",
        e.id: "created",
    }
    # Matched customers without a Stripe id got theirs; the unmatched one was created.
    api = tenant.api()
    for reference, stripe_id in (("acme", a.id), ("gamma", c.id), ("delta", d.id)):
        shown = api.get(f"/api/v1/client/customers/{reference}").json()
        assert shown["stripeCustomerId"] == stripe_id
    created = api.get(f"/api/v1/client/customers/{e.id}").json()
    assert created["source"] == "stripe"
    assert (created["email"], created["firstName"]) == ("new@example.test", "Epsilon Ltd")
    assert created["stripeCustomerId"] == e.id
    assert Customer.objects.filter(environment=tenant.test).count() == 5

    listed = api.get(SUBSCRIPTIONS).json()["items"]
    by_customer = {row["customerReferenceId"]: row for row in listed}
    assert set(by_customer) == {"acme", "beta", e.id}
    acme = by_customer["acme"]
    assert (acme["status"], acme["currency"], acme["amount"]) == ("ACTIVE", "USD", "60")
    assert (acme["interval"], acme["intervalCount"]) == ("MONTH", 1)
    assert acme["items"][0]["quantity"] == 2 and acme["items"][0]["amount"] == "60"
    assert acme["startedAt"] == "2026-09-15T00:00:00Z"
    assert acme["currentPeriodStart"] == "2026-09-15T00:00:00Z"
    assert acme["revenueFrom"] == "2026-09-15T00:00:00Z" and acme["revenueUntil"] is None
    assert acme["countsAsRevenue"] is True
    euro_row = by_customer[e.id]
    assert (euro_row["currency"], euro_row["amount"], euro_row["countsAsRevenue"]) == (
        "EUR",
        "15",
        False,
    )
    beta = by_customer["beta"]
    assert beta["status"] == "CANCELED" and beta["endedAt"] is not None
    assert beta["revenueUntil"] == beta["endedAt"]

    # Read-only: Stripe holds exactly what the test put there.
    assert _stripe_counts(stripe) == before


def test_a_second_run_updates_and_never_duplicates(tenant: Tenant, peer: StripePeer) -> None:
    stripe = importing(tenant, peer)
    customer = stripe_customer(stripe, metadata={"customerReferenceId": "acme"})
    plan = monthly_plan(stripe, 3000)
    sub = subscribe(stripe, customer, plan, quantity=2, start=ts(2026, 9, 15))
    first = run_import(tenant)
    assert first["status"] == "COMPLETED"
    rows = lambda model: model.objects.filter(environment=tenant.test).count()  # noqa: E731
    counts = [rows(m) for m in (ImportedCustomer, ImportedProduct, ImportedPrice, Customer)]
    assert counts == [1, 1, 1, 1]

    # Stripe changes: more seats, a new name; then the import runs again.
    item = sub["items"]["data"][0]
    stripe.v1.subscriptions.update(
        sub.id, params={"items": [{"id": item.id, "plan": plan.id, "quantity": 3}]}
    )
    stripe.v1.customers.update(customer.id, params={"name": "Acme Corp"})
    second = run_import(tenant)

    assert second["status"] == "COMPLETED" and second["jobId"] != first["jobId"]
    assert second["counts"]["customers"] == {"read": 1, "updated": 1}
    assert [rows(m) for m in (ImportedCustomer, ImportedProduct, ImportedPrice, Customer)] == counts
    assert rows(ImportedSubscription) == 1
    (listed,) = tenant.api().get(SUBSCRIPTIONS).json()["items"]
    assert listed["amount"] == "90" and listed["items"][0]["quantity"] == 3
    assert ImportedCustomer.objects.get(environment=tenant.test).name == "Acme Corp"
    # Both jobs are listed, newest first.
    jobs = tenant.api().get("/api/v1/client/stripe/import/jobs").json()["items"]
    assert [j["jobId"] for j in jobs] == [second["jobId"], first["jobId"]]


def test_prices_tiers_and_bad_objects(tenant: Tenant, peer: StripePeer) -> None:
    """Prices (/v1/prices) with tiers and decimal amounts, several items; an object the
    import cannot read is counted as failed with its reason and the run goes on."""
    stripe = importing(tenant, peer)
    product = stripe.v1.products.create(params={"name": "Seats"})
    graduated = stripe.v1.prices.create(
        params={
            "currency": "usd",
            "product": product.id,
            "billing_scheme": "tiered",
            "tiers_mode": "graduated",
            "tiers": [
                {"up_to": 5, "unit_amount": 1000, "flat_amount": 500},
                {"up_to": "inf", "unit_amount_decimal": "750.5"},
            ],
            "recurring": {"interval": "month"},
        }
    )
    decimal = stripe.v1.prices.create(
        params={
            "currency": "usd",
            "product": product.id,
            "unit_amount_decimal": "1234.5678",
            "recurring": {"interval": "month"},
        }
    )
    payer = stripe_customer(stripe, metadata={"customerReferenceId": "acme"})
    stripe.v1.subscriptions.create(
        params={
            "customer": payer.id,
            "items": [{"price": graduated.id, "quantity": 7}, {"price": decimal.id, "quantity": 3}],
        }
    )
    # A subscription whose customer was deleted in Stripe cannot be attributed to anyone.
    gone = stripe_customer(stripe)
    orphan = subscribe(stripe, gone, monthly_plan(stripe, 900), start=ts(2026, 10, 1))
    stripe.v1.customers.delete(gone.id)
    job = run_import(tenant)

    assert job["status"] == "COMPLETED", job
    assert job["failed"] == 1 and job["counts"]["subscriptions"]["failed"] == 1
    assert job["processed"] + job["failed"] == job["total"]
    (error,) = job["errors"]
    assert error["object"] == "subscriptions" and error["id"] == orphan.id
    assert gone.id in error["message"]
    (row,) = tenant.api().get(SUBSCRIPTIONS).json()["items"]
    # Graduated, 7 seats: 5 x $10 + $5 flat, then 2 x $7.505 = $70.01;
    # decimal: 3 x $12.345678 = $37.037034. Together $107.047034 a month.
    assert [i["amount"] for i in row["items"]] == ["70.01", "37.037034"]
    assert row["amount"] == "107.047034"
    stored = ImportedPrice.objects.get(environment=tenant.test, stripe_id=graduated.id)
    assert stored.tiers_mode == "graduated" and len(stored.tiers) == 2
