"""Revenue attribution: invoice revenue per customer and feature (feature lines directly,
base fees spread by the features' cost share), beside the features' cost."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from apps.billing.attribution import revenue_attribution
from apps.billing.models import Invoice
from apps.billing.services import billing_close_periods, invoice_void
from tests.billing.helpers import SYSTEM, per_unit, plan, subscribe, usage, utc

URL = "/api/v1/client/billing/revenue"
MARCH = {"from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"}


@pytest.fixture
def march(tenant):
    """In arrears, $30 a month; tokens at $0.01 (1,000 used, cost $2), images at $0.10
    (10 used, cost $4). March's invoice: 30 + 10 + 1."""
    the_plan = plan(
        tenant.test, price="30", features={"tokens": per_unit("0.01"), "images": per_unit("0.1")}
    )
    subscription = subscribe(tenant.test, the_plan, at=utc(2026, 3, 1, 9))
    usage(tenant.test, (utc(2026, 3, 2), 500), (utc(2026, 3, 9), 500), cost="1")
    usage(tenant.test, (utc(2026, 3, 3), 10), feature="images", cost="4")
    billing_close_periods(now=utc(2026, 4, 1, 0, 5))
    return subscription


@pytest.mark.django_db
class TestAttribution:
    def test_base_fee_follows_the_cost_share(self, tenant, march):
        items = {
            i.feature_key: i
            for i in revenue_attribution(tenant.test, start=utc(2026, 3, 1), end=utc(2026, 4, 1))
        }
        tokens, images = items["tokens"], items["images"]
        # $30 base: tokens cost 2 of 6 -> $10, images 4 of 6 -> $20.
        assert (tokens.usage_revenue, tokens.base_revenue, tokens.revenue) == (D(10), D(10), D(20))
        assert (images.usage_revenue, images.base_revenue, images.revenue) == (D(1), D(20), D(21))
        assert (tokens.cost_usd, images.cost_usd) == (D(2), D(4))
        assert (tokens.margin, images.margin) == (D(18), D(17))
        assert set(items) == {"tokens", "images"}

    def test_void_invoices_earn_nothing_and_unused_fees_stay_unattributed(self, tenant, march):
        invoice_void(invoice=Invoice.objects.get(subscription=march), actor=SYSTEM)
        assert revenue_attribution(tenant.test, start=utc(2026, 3, 1), end=utc(2026, 4, 1)) == []
        # April: no usage; its base fee has no feature to go to.
        billing_close_periods(now=utc(2026, 5, 1, 0, 5))
        (april,) = revenue_attribution(tenant.test, start=utc(2026, 4, 1), end=utc(2026, 5, 1))
        assert (april.feature_key, april.revenue, april.margin) == (None, D(30), D(30))

    def test_api(self, tenant, march):
        body = tenant.api().get(URL, MARCH).json()
        rows = {item["featureKey"]: item for item in body["items"]}
        assert rows["tokens"]["revenue"] == "20"
        assert rows["images"]["baseRevenue"] == "20"
        assert rows["images"]["margin"] == "17"
        assert body["totals"]["USD"]["revenue"] == "41"

    def test_api_validation(self, tenant):
        client = tenant.api()
        for params, field in [
            ({}, "from"),
            ({"from": "March", "to": "2026-04-01"}, "from"),
            ({"from": "2026-04-01", "to": "2026-03-01"}, "to"),
            ({"from": "2024-01-01", "to": "2026-03-01"}, "to"),
        ]:
            response = client.get(URL, params)
            assert response.status_code == 400
            assert field in response.json()["error"]["fields"]

    def test_outsiders_see_nothing(self, tenant, outsider, march):
        assert outsider.api().get(URL, MARCH).json()["items"] == []
        assert tenant.api(tenant.sk_live).get(URL, MARCH).json()["items"] == []
