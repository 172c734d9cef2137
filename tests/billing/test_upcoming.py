"""The upcoming invoice: what the cycle will issue at the period's end, from the usage so
far. It equals the invoice the period then produces, to the cent, and writes nothing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing.models import Invoice, SubscriptionBilling
from apps.billing.services import billing_close_periods
from apps.billing.upcoming import upcoming_invoices
from apps.customers.models import Customer
from apps.plans.models import Plan
from apps.plans.pricing import PricingModel, Rule
from apps.plans.services import RuleSpec
from tests.billing.helpers import invoices_of, per_unit, plan, subscribe, tiers, usage, utc
from tests.factories import make_key

pytestmark = pytest.mark.django_db

MARCH = utc(2026, 3, 1, 9)
MID_MARCH = utc(2026, 3, 25, 12)
APRIL_CLOSE = utc(2026, 4, 1, 0, 5)
GRADUATED = RuleSpec(
    rule=Rule(
        model=PricingModel.GRADUATED,
        tiers=tiers(("1000", "0"), ("10000", "0.002", "5"), (None, "0.001")),
    )
)


def issued(invoice: Invoice) -> list[tuple[str, str, int]]:
    return [(line.kind, line.description, line.amount_minor) for line in invoice.lines.all()]


def previewed(upcoming) -> list[list[tuple[str, str, int]]]:
    return [
        [(line.kind, line.description, minor) for line, minor in invoice.lines]
        for invoice in upcoming.invoices
    ]


def test_in_arrears_the_preview_is_the_invoice_the_period_produces(tenant):
    the_plan = plan(tenant.test, price="49", features={"tokens": GRADUATED, "seats": per_unit("3")})
    sub = subscribe(tenant.test, the_plan, at=MARCH)
    usage(tenant.test, (utc(2026, 3, 2), 4000), (utc(2026, 3, 10), 2001))
    usage(tenant.test, (utc(2026, 3, 3), 2), feature="seats")

    upcoming = upcoming_invoices(sub, now=MID_MARCH)
    assert upcoming.at == utc(2026, 4, 1)
    (invoice,) = upcoming.invoices
    # $49 base + graduated (1,000 free, 5,001 x 0.002 + $5 = 15.002, rounded once per line
    # to 15.00) + 2 seats x $3.
    exact = sorted(line.amount_exact for line, _ in invoice.lines)
    assert exact == [Decimal("6"), Decimal("15.002"), Decimal("49")]
    assert invoice.total == Decimal("70.00")
    assert invoice.total_minor == 4900 + 1500 + 600
    # Nothing written: no invoice, no cursor.
    assert not Invoice.objects.filter(subscription=sub).exists()
    assert not SubscriptionBilling.objects.filter(subscription=sub).exists()

    billing_close_periods(now=APRIL_CLOSE)
    (april,) = invoices_of(sub)
    assert previewed(upcoming) == [issued(april)]
    assert april.total_minor == invoice.total_minor
    assert (april.period_start, april.period_end) == (
        invoice.draft.period_start,
        invoice.draft.period_end,
    )


def test_in_advance_the_preview_is_next_periods_fee_and_this_periods_usage(tenant):
    the_plan = plan(tenant.test, price="49", timing=Plan.BillingTiming.IN_ADVANCE)
    sub = subscribe(tenant.test, the_plan, at=MARCH)
    billing_close_periods(now=utc(2026, 3, 1, 10))  # the first invoice, in advance
    usage(tenant.test, (utc(2026, 3, 20), 300))

    upcoming = upcoming_invoices(sub, now=MID_MARCH)
    (invoice,) = upcoming.invoices
    assert invoice.total_minor == 4900 + 60  # April's fee and 300 x $0.002 of March
    assert Invoice.objects.filter(subscription=sub).count() == 1

    billing_close_periods(now=APRIL_CLOSE)
    _, april = invoices_of(sub)
    assert previewed(upcoming) == [issued(april)]


def test_a_cancelled_subscription_has_nothing_upcoming_after_its_end(tenant):
    the_plan = plan(tenant.test, price="10")
    sub = subscribe(tenant.test, the_plan, at=MARCH)
    billing_close_periods(now=APRIL_CLOSE)
    sub.ended_at = utc(2026, 4, 1)
    sub.status = sub.Status.CANCELLED
    sub.save(update_fields=["ended_at", "status"])
    assert upcoming_invoices(sub, now=utc(2026, 4, 10)).invoices == []


class TestApi:
    URL = "/api/v1/client/billing/upcoming/{}"

    def test_the_customer_sees_what_the_period_will_bill(self, tenant):
        start = timezone.now() - dt.timedelta(days=3)
        sub = subscribe(tenant.test, plan(tenant.test, price="49"), at=start)
        usage(tenant.test, (start + dt.timedelta(hours=1), 500))
        body = tenant.api().get(self.URL.format("cus_1")).json()
        assert body["customerReferenceId"] == "cus_1"
        (invoice,) = body["invoices"]
        assert invoice["subscription"] == str(sub.pk)
        assert invoice["amount"] == "50" and invoice["amountMinor"] == 5000
        assert [line["amountMinor"] for line in invoice["items"]] == [4900, 100]
        assert body["issuedAt"] == invoice["invoicePeriodEnd"].replace("+00:00", "Z")

    def test_no_subscription_nothing_upcoming_and_unknown_customer_404(self, tenant):
        subscribe(tenant.test, plan(tenant.test, price="49"), at=timezone.now())
        api = tenant.api()
        api.post("/api/v1/client/customers", {"customerReferenceId": "cus_free"}, format="json")
        free = api.get(self.URL.format("cus_free"))
        assert free.status_code == 200 and free.json()["invoices"] == []
        assert api.get(self.URL.format("cus_nobody")).status_code == 404

    def test_outsiders_and_other_keys_see_nothing(self, tenant, outsider):
        subscribe(tenant.test, plan(tenant.test, price="49"), at=timezone.now())
        other = plan(tenant.test, "other", price="9")
        subscribe(tenant.test, other, at=timezone.now(), reference="cus_2")
        # Another organization, and this organization's live environment: no such customer.
        assert outsider.api().get(self.URL.format("cus_1")).status_code == 404
        assert tenant.api(tenant.sk_live).get(self.URL.format("cus_1")).status_code == 404
        # A key without billing.read.
        obs = make_key(tenant.test, "obs", scopes=["events.write"]).plaintext
        assert tenant.api(obs).get(self.URL.format("cus_1")).status_code == 403
        # A customer key reads its own customer only.
        mine = Customer.objects.get(environment=tenant.test, reference_id="cus_1")
        own = tenant.api(make_key(tenant.test, "ck", customer=mine).plaintext)
        assert own.get(self.URL.format("cus_1")).status_code == 200
        assert own.get(self.URL.format("cus_2")).status_code in (403, 404)


def test_the_subscription_page_shows_the_upcoming_invoice(tenant, web):
    start = timezone.now() - dt.timedelta(days=3)
    sub = subscribe(tenant.test, plan(tenant.test, price="49"), at=start)
    usage(tenant.test, (start + dt.timedelta(hours=1), 500))
    page = web.get(f"/dashboard/subscriptions/{sub.pk}/").content.decode()
    assert 'data-testid="upcoming-invoice"' in page
    assert 'data-upcoming-total-minor="5000"' in page
    assert "$50.00" in page
