"""The printable invoice page: members of the organization see it in its environment;
an outsider, or the other environment, gets a 404; anonymous visitors go to log in."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.middleware import SESSION_ENV
from apps.accounts.models import Role
from apps.billing.models import Invoice
from apps.billing.services import billing_close_periods
from apps.core.money import from_minor_units
from apps.core.money_format import money_html
from apps.plans.models import Plan
from tests.billing.helpers import plan, subscribe, usage, utc
from tests.conftest import web_as


@pytest.fixture
def invoice(tenant) -> Invoice:
    the_plan = plan(tenant.test, price="49", timing=Plan.BillingTiming.IN_ADVANCE)
    subscribe(tenant.test, the_plan, at=utc(2026, 3, 1, 9))
    usage(tenant.test, (utc(2026, 3, 20), 300))
    billing_close_periods(now=utc(2026, 4, 1, 0, 5))
    return Invoice.objects.order_by("sequence").last()


@pytest.mark.django_db
class TestInvoicePage:
    def test_renders_for_the_owner(self, web, invoice):
        response = web.get(f"/invoices/{invoice.pk}")
        assert response.status_code == 200
        html = response.content.decode()
        assert "Invoice INV-TEST-000002" in html
        assert "Plan base price: Pro" in html
        assert "$49.6" in html  # the total
        assert "$0.6" in html  # the usage line
        assert "cus_1" in html
        assert "test environment" in html

    def test_a_viewer_of_the_organization_sees_it(self, tenant, invoice):
        viewer = web_as(tenant.add_member(Role.VIEWER))
        assert viewer.get(f"/invoices/{invoice.pk}").status_code == 200

    def test_outsider_gets_404(self, outsider, invoice):
        stranger = web_as(outsider.owner)
        assert stranger.get(f"/invoices/{invoice.pk}").status_code == 404

    def test_other_environment_gets_404(self, web, invoice):
        session = web.session
        session[SESSION_ENV] = "live"
        session.save()
        assert web.get(f"/invoices/{invoice.pk}").status_code == 404

    def test_anonymous_is_sent_to_log_in(self, invoice):
        response = Client().get(f"/invoices/{invoice.pk}")
        assert response.status_code == 302
        assert "login" in response["Location"]

    def test_unknown_invoice_is_404(self, web, invoice):
        assert web.get("/invoices/00000000-0000-0000-0000-000000000000").status_code == 404


@pytest.mark.django_db
def test_the_dashboard_and_the_printed_invoice_show_the_same_amounts(web, invoice):
    """One money format for invoices (issue 17): "$49.60" in both places, never "49.60 USD"
    in one of them, each amount titled with its exact value."""
    total = money_html(from_minor_units(invoice.total_minor, invoice.currency), invoice.currency)
    assert "$49.60" in total
    printed = web.get(f"/invoices/{invoice.pk}").content.decode()
    dashboard = web.get(f"/dashboard/invoices/{invoice.pk}/").content.decode()
    for page in (printed, dashboard):
        assert total in page
        assert "49.60 USD" not in page
    for line in invoice.lines.all():
        shown = money_html(from_minor_units(line.amount_minor, invoice.currency), "USD")
        assert shown in printed and shown in dashboard
