"""Invoices issued now: one-off charges on a subscription (POST /api/v1/client/billing/invoices).
Numbered and due like any invoice, recognised as revenue on the day, audited; refused
for an ended subscription, under Stripe-driven billing, and to outsiders."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from apps.accounts.models import AuditEntry
from apps.billing.models import Invoice
from tests.billing.helpers import plan, subscribe
from tests.factories import make_key

pytestmark = pytest.mark.django_db

URL = "/api/v1/client/billing/invoices"


def charge(api, subscription, *items):
    body = {
        "subscriptionId": str(subscription.pk),
        "items": [{"description": d, "amount": a} for d, a in items],
    }
    return api.post(URL, body, format="json")


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    return error


@pytest.fixture
def sub(tenant):
    return subscribe(tenant.test, plan(tenant.test, price="49"), at=timezone.now())


def test_charges_become_an_invoice_now_and_count_as_revenue(tenant, sub):
    api = tenant.api()
    response = charge(api, sub, ("Onboarding workshop", "250.00"), ("Extra seat", "12.5"))
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["type"], body["reason"]) == ("ADJUSTMENT", "one_off")
    assert body["amount"] == "262.5" and body["amountMinor"] == 26250
    assert [(i["kind"], i["description"], i["amountMinor"]) for i in body["items"]] == [
        ("CHARGE", "Onboarding workshop", 25000),
        ("CHARGE", "Extra seat", 1250),
    ]
    assert body["customerReferenceId"] == "cus_1" and body["status"] in {"DUE", "PENDING"}
    invoice = Invoice.objects.get(pk=body["id"])
    assert invoice.number.startswith("INV-TEST-")
    assert AuditEntry.objects.filter(
        action="invoice.issued", target_id=str(invoice.pk), environment=tenant.test
    ).exists()
    # The customer's invoices list it, and its revenue reaches the margins today.
    listed = api.get(f"{URL}/cus_1").json()["items"]
    assert [item["id"] for item in listed] == [body["id"]]
    customer = api.get("/api/customers/cus_1").json()
    assert Decimal(customer["revenue"]) == Decimal("262.5")


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([], "items"),
        ([("Setup", "0")], "items.0.amount"),
        ([("Setup", "-5")], "items.0.amount"),
        ([("Setup", "1.005")], "items.0.amount"),  # USD has two places
        ([("  ", "5")], "items.0.description"),
    ],
)
def test_bad_charges_are_400_and_issue_nothing(tenant, sub, items, field):
    error = assert_error(charge(tenant.api(), sub, *items), 400, "validation_failed")
    assert field in error["fields"], error
    assert not Invoice.objects.filter(subscription=sub).exists()


def test_refused_for_an_ended_subscription_and_under_stripe_driven_billing(tenant, sub):
    api = tenant.api()
    patched = api.patch(
        "/api/v1/client/billing/settings", {"stripeMode": "STRIPE_DRIVEN"}, format="json"
    )
    assert patched.status_code == 200
    assert_error(charge(api, sub, ("Setup", "5")), 409, "stripe_driven")
    api.patch("/api/v1/client/billing/settings", {"stripeMode": "NONE"}, format="json")
    sub.status = sub.Status.CANCELLED
    sub.ended_at = timezone.now()
    sub.save(update_fields=["status", "ended_at"])
    assert_error(charge(api, sub, ("Setup", "5")), 409, "subscription_ended")
    assert not Invoice.objects.filter(subscription=sub).exists()


def test_outsiders_and_read_only_keys_cannot_charge(tenant, outsider, sub):
    assert charge(outsider.api(), sub, ("Setup", "5")).status_code == 404
    assert charge(tenant.api(tenant.sk_live), sub, ("Setup", "5")).status_code == 404
    reader = tenant.api(make_key(tenant.test, "obs", scopes=["billing.read"]).plaintext)
    assert charge(reader, sub, ("Setup", "5")).status_code == 403
    assert not Invoice.objects.filter(subscription=sub).exists()


def test_the_subscription_page_invoices_a_charge_only_once_confirmed(tenant, web, sub):
    url = f"/dashboard/subscriptions/{sub.pk}/charge/"
    form = {"description": "Onboarding workshop", "amount": "250"}
    asked = web.post(url, form)
    assert asked.status_code == 200 and "Issue the invoice" in asked.content.decode()
    assert "$250.00" in asked.content.decode()
    assert not Invoice.objects.filter(subscription=sub).exists()  # nothing before confirming
    done = web.post(url, {**form, "confirm": "yes"})
    assert done.status_code == 302
    (invoice,) = Invoice.objects.filter(subscription=sub)
    assert done["Location"] == f"/dashboard/invoices/{invoice.pk}/"
    assert (invoice.reason, invoice.total_minor) == ("one_off", 25000)
    # A bad amount is a message on the page, not an invoice and not a 500.
    bad = web.post(url, {"description": "x", "amount": "lots", "confirm": "yes"}, follow=True)
    assert bad.status_code == 200 and "Give the amount as a number" in bad.content.decode()
    assert Invoice.objects.filter(subscription=sub).count() == 1
