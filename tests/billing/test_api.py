"""Invoice API: the customer's invoices with items, mark paid and void (scopes, status
rules, validation envelopes), settings, and what an outsider (other organization, other
environment, another customer's key) sees: nothing."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.billing.models import Invoice
from apps.billing.services import billing_close_periods
from apps.plans.models import Plan
from tests.billing.helpers import customer, plan, subscribe, usage, utc
from tests.factories import make_key

ADVANCE = Plan.BillingTiming.IN_ADVANCE
BASE = "/api/v1/client/billing/invoices"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["requestId"]
    return body["error"]


@pytest.fixture
def billed(tenant):
    """cus_1 on an in-advance $49 plan since March 1st, with March usage, closed in April:
    two invoices (March's initial one and April's)."""
    the_plan = plan(tenant.test, price="49", timing=ADVANCE)
    sub = subscribe(tenant.test, the_plan, at=utc(2026, 3, 1, 9))
    usage(tenant.test, (utc(2026, 3, 20), 300))
    billing_close_periods(now=utc(2026, 4, 1, 0, 5))
    return sub


def mark_paid(client, invoice: Invoice, body=None):
    return client.post(f"{BASE}/{invoice.pk}/mark-paid", body or {}, format="json")


@pytest.mark.django_db
class TestRead:
    def test_customer_invoices_newest_first_with_items(self, tenant, billed):
        response = tenant.api().get(f"{BASE}/cus_1")
        assert response.status_code == 200
        body = response.json()
        assert body["hasMore"] is False
        april, march = body["items"]
        assert march["type"] == "IN_ADVANCE_INITIAL"
        assert april["type"] == "REGULAR"
        assert april["status"] == "DUE"
        assert april["amount"] == "49.6"
        assert april["amountMinor"] == 4960
        assert april["currency"] == "USD"
        assert april["number"] == "INV-TEST-000002"
        assert april["customerReferenceId"] == "cus_1"
        assert april["subscription"] == str(billed.pk)
        assert april["invoicePeriodStart"] == "2026-04-01T00:00:00Z"
        base, used = april["items"]
        assert base["kind"] == "BASE" and base["chargeAmount"] == "49"
        assert used["kind"] == "USAGE" and used["chargeAmount"] == "0.6"
        assert used["exactAmount"] == "0.6" and used["quantity"] == "300"
        assert used["featureKey"] == "tokens"
        assert april["htmlUrl"] == f"/invoices/{april['id']}"

    def test_list_queries_do_not_grow_with_invoices(self, tenant, billed):
        client = tenant.api()
        client.get(f"{BASE}/cus_1")  # warm the key cache
        with CaptureQueriesContext(connection) as few:
            client.get(f"{BASE}/cus_1")
        billing_close_periods(now=utc(2026, 7, 1, 1))
        assert Invoice.objects.count() == 5
        # The close can outlast the key cache (APIKEY_CACHE_SECONDS, 2 s) on a busy machine.
        client.get(f"{BASE}/cus_1")
        with CaptureQueriesContext(connection) as more:
            assert len(client.get(f"{BASE}/cus_1").json()["items"]) == 5
        assert len(more.captured_queries) == len(few.captured_queries)

    def test_environment_list_with_filters(self, tenant, billed):
        client = tenant.api()
        assert len(client.get(BASE).json()["items"]) == 2
        assert len(client.get(BASE, {"status": "due"}).json()["items"]) == 2
        assert client.get(BASE, {"status": "PAID"}).json()["items"] == []
        assert len(client.get(BASE, {"subscriptionId": str(billed.pk)}).json()["items"]) == 2
        assert client.get(BASE, {"customerReferenceId": "nobody"}).json()["items"] == []

    def test_one_invoice(self, tenant, billed):
        invoice = Invoice.objects.filter(subscription=billed).order_by("sequence").first()
        response = tenant.api().get(f"{BASE}/cus_1/{invoice.pk}")
        assert response.status_code == 200
        assert response.json()["id"] == str(invoice.pk)
        assert_error(tenant.api().get(f"{BASE}/cus_1/not-a-uuid"), 404, "not_found")

    def test_bad_filters_are_400_envelopes(self, tenant, billed):
        client = tenant.api()
        error = assert_error(client.get(BASE, {"status": "unpaid"}), 400, "validation_failed")
        assert "status" in error["fields"]
        error = assert_error(client.get(BASE, {"subscriptionId": "x"}), 400, "validation_failed")
        assert "subscriptionId" in error["fields"]
        assert_error(client.get(f"{BASE}/cus_1", {"limit": 0}), 400, "validation_failed")
        assert_error(client.get(f"{BASE}/cus_1", {"cursor": "!!"}), 400, "validation_failed")

    def test_unknown_customer_is_404(self, tenant, billed):
        assert_error(tenant.api().get(f"{BASE}/nobody"), 404, "not_found")

    def test_read_needs_billing_read(self, tenant, billed):
        reader = tenant.api(make_key(tenant.test, "obs", scopes=["billing.read"]).plaintext)
        assert reader.get(f"{BASE}/cus_1").status_code == 200
        other = tenant.api(make_key(tenant.test, "obs", scopes=["usage.read"]).plaintext)
        assert_error(other.get(f"{BASE}/cus_1"), 403, "scope_denied")
        assert_error(other.get(BASE), 403, "scope_denied")


@pytest.mark.django_db
class TestMarkPaidAndVoid:
    def test_mark_paid(self, tenant, billed):
        invoice = Invoice.objects.filter(subscription=billed).order_by("sequence").first()
        response = mark_paid(
            tenant.api(), invoice, {"paymentReference": "wire 42", "paidAt": "2026-03-02T10:00:00Z"}
        )
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["status"] == "PAID"
        assert body["paidAt"] == "2026-03-02T10:00:00Z"
        assert body["paymentReference"] == "wire 42"
        # Again: nothing changes.
        again = mark_paid(tenant.api(), invoice)
        assert again.status_code == 200
        assert again.json()["paidAt"] == "2026-03-02T10:00:00Z"

    def test_mark_paid_needs_billing_write(self, tenant, billed):
        invoice = Invoice.objects.filter(subscription=billed).first()
        reader = tenant.api(make_key(tenant.test, "obs", scopes=["billing.read"]).plaintext)
        error = assert_error(mark_paid(reader, invoice), 403, "scope_denied")
        assert error["requiredScope"] == "billing.write"
        writer = tenant.api(make_key(tenant.test, "obs", scopes=["billing.write"]).plaintext)
        assert mark_paid(writer, invoice).status_code == 200
        ck = tenant.api(
            make_key(
                tenant.test, "ck", customer=customer(tenant.test), scopes=["read", "purchase"]
            ).plaintext
        )
        assert_error(mark_paid(ck, invoice), 403, "forbidden")
        invoice.refresh_from_db()
        assert invoice.status == Invoice.Status.PAID

    def test_mark_paid_validation(self, tenant, billed):
        invoice = Invoice.objects.filter(subscription=billed).first()
        client = tenant.api()
        error = assert_error(
            mark_paid(client, invoice, {"paidAt": "yesterday"}), 400, "validation_failed"
        )
        assert "paidAt" in error["fields"]
        error = assert_error(mark_paid(client, invoice, {"amount": 5}), 400, "validation_failed")
        assert "amount" in error["fields"]
        error = assert_error(
            mark_paid(client, invoice, {"paidAt": "2999-01-01T00:00:00Z"}), 400, "validation_failed"
        )
        assert "paidAt" in error["fields"]
        response = client.post(
            f"{BASE}/{invoice.pk}/mark-paid", data="{nope", content_type="application/json"
        )
        assert_error(response, 400, "malformed_body")
        assert_error(
            client.post(f"{BASE}/{invoice.pk}/mark-paid", [1], format="json"),
            400,
            "validation_failed",
        )
        invoice.refresh_from_db()
        assert invoice.status == Invoice.Status.DUE

    def test_void_then_mark_paid_is_409(self, tenant, billed):
        invoice = Invoice.objects.filter(subscription=billed).first()
        client = tenant.api()
        response = client.post(f"{BASE}/{invoice.pk}/void", {"reason": "goodwill"}, format="json")
        assert response.status_code == 200
        assert response.json()["status"] == "VOID"
        assert response.json()["number"] == invoice.number  # the number stays used
        assert_error(mark_paid(client, invoice), 409, "invoice_void")

    def test_a_paid_invoice_cannot_be_voided(self, tenant, billed):
        invoice = Invoice.objects.filter(subscription=billed).first()
        mark_paid(tenant.api(), invoice)
        response = tenant.api().post(f"{BASE}/{invoice.pk}/void", {}, format="json")
        assert_error(response, 409, "invoice_paid")

    def test_stripe_driven_environment_refuses_mark_paid(self, tenant, billed):
        client = tenant.api()
        response = client.patch(
            "/api/v1/client/billing/settings", {"stripeMode": "STRIPE_DRIVEN"}, format="json"
        )
        assert response.status_code == 200
        assert response.json()["stripeMode"] == "STRIPE_DRIVEN"
        invoice = Invoice.objects.filter(subscription=billed).first()
        assert_error(mark_paid(client, invoice), 409, "stripe_driven")


@pytest.mark.django_db
class TestSettings:
    def test_read_and_change(self, tenant):
        client = tenant.api()
        assert client.get("/api/v1/client/billing/settings").json() == {
            "paymentTermsDays": 0,
            "gracePeriodDays": None,
            "stripeMode": "NONE",
        }
        response = client.patch(
            "/api/v1/client/billing/settings",
            {"paymentTermsDays": 14, "gracePeriodDays": 5},
            format="json",
        )
        assert response.json()["paymentTermsDays"] == 14
        assert response.json()["gracePeriodDays"] == 5
        # The live environment keeps its own.
        live = tenant.api(tenant.sk_live).get("/api/v1/client/billing/settings").json()
        assert live["paymentTermsDays"] == 0

    def test_validation(self, tenant):
        client = tenant.api()
        error = assert_error(
            client.patch(
                "/api/v1/client/billing/settings",
                {"paymentTermsDays": -1, "stripeMode": "SOMETIMES"},
                format="json",
            ),
            400,
            "validation_failed",
        )
        assert set(error["fields"]) == {"paymentTermsDays", "stripeMode"}


@pytest.mark.django_db
class TestIsolation:
    def test_other_organization_sees_nothing(self, tenant, outsider, billed):
        invoice = Invoice.objects.filter(subscription=billed).first()
        other = outsider.api()
        assert other.get(BASE).json()["items"] == []
        assert_error(other.get(f"{BASE}/cus_1"), 404, "not_found")
        assert_error(other.get(f"{BASE}/cus_1/{invoice.pk}"), 404, "not_found")
        assert_error(mark_paid(other, invoice), 404, "not_found")
        assert_error(other.post(f"{BASE}/{invoice.pk}/void", {}, format="json"), 404, "not_found")
        invoice.refresh_from_db()
        assert invoice.status == Invoice.Status.DUE

    def test_other_environment_sees_nothing(self, tenant, billed):
        invoice = Invoice.objects.filter(subscription=billed).first()
        customer(tenant.live, "cus_1")  # the same reference in live has no invoices
        live = tenant.api(tenant.sk_live)
        assert live.get(BASE).json()["items"] == []
        assert live.get(f"{BASE}/cus_1").json()["items"] == []
        assert_error(live.get(f"{BASE}/cus_1/{invoice.pk}"), 404, "not_found")
        assert_error(mark_paid(live, invoice), 404, "not_found")

    def test_customer_key_reads_only_its_own(self, tenant, billed):
        own = customer(tenant.test, "cus_1")
        customer(tenant.test, "cus_2")
        ck = tenant.api(make_key(tenant.test, "ck", customer=own, scopes=["read"]).plaintext)
        assert len(ck.get(f"{BASE}/cus_1").json()["items"]) == 2
        assert_error(ck.get(f"{BASE}/cus_2"), 403, "customer_mismatch")
        assert_error(ck.get(BASE), 403, "forbidden")
        other_sub = subscribe(
            tenant.test,
            plan(tenant.test, "other", price="5", timing=ADVANCE),
            at=utc(2026, 3, 1),
            reference="cus_2",
        )
        billing_close_periods(now=utc(2026, 3, 1, 1))
        theirs = Invoice.objects.get(subscription=other_sub)
        assert_error(ck.get(f"{BASE}/cus_1/{theirs.pk}"), 404, "not_found")


@pytest.mark.django_db
def test_pages_follow_the_invoice_numbers(tenant, billed):
    billing_close_periods(now=utc(2026, 7, 1, 1))
    client = tenant.api()
    first = client.get(f"{BASE}/cus_1", {"limit": 2}).json()
    assert first["hasMore"] is True
    second = client.get(f"{BASE}/cus_1", {"limit": 2, "cursor": first["nextCursor"]}).json()
    third = client.get(f"{BASE}/cus_1", {"limit": 2, "cursor": second["nextCursor"]}).json()
    numbers = [i["number"] for page in (first, second, third) for i in page["items"]]
    assert numbers == [f"INV-TEST-{n:06d}" for n in (5, 4, 3, 2, 1)]
    assert third["hasMore"] is False
