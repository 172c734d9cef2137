"""Invoice revenue in every Observe read (docs/revenue.md): a Platform customer on a
$49/month plan with usage and a paid invoice. The customer page, the customers list,
the overview, the features page and GET /api/customers/{ref} show revenue, cost and
margin that add up to the invoice and the events, to the cent, for the whole month and
for 7 days; event revenue and the invoice's usage lines are not counted twice."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest

from apps.billing.models import Invoice
from apps.billing.recognition import revenue_rebuild, split_by_day
from apps.billing.services import billing_close_periods, invoice_mark_paid
from apps.events.models import RecognisedRevenue
from tests.billing.helpers import SYSTEM, per_unit, plan, subscribe, usage, utc
from tests.dashboard.html import find_all, find_one

D = Decimal
CENT = D("0.01")
MONTH = {"from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"}
WEEK = {"from": "2026-03-02T00:00:00Z", "to": "2026-03-09T00:00:00Z"}
# The pages take days, the last one included.
PAGE_MONTH = {"from": "2026-03-01", "to": "2026-03-31"}
PAGE_WEEK = {"from": "2026-03-02", "to": "2026-03-08"}

pytestmark = pytest.mark.django_db


def cents(value: Any) -> Decimal:
    return D(str(value)).quantize(CENT, rounding=ROUND_HALF_EVEN)


@pytest.fixture
def march(tenant):
    """Pro: $49 a month in arrears, tokens $0.01 a unit, images $0.10 a unit (the events
    carry that revenue from the plan rule at ingestion). tokens: 1,000 units in two
    events costing $1 each; images: 10 units costing $4. March's invoice: 49 + 10 + 1."""
    the_plan = plan(
        tenant.test, price="49", features={"tokens": per_unit("0.01"), "images": per_unit("0.1")}
    )
    subscription = subscribe(tenant.test, the_plan, at=utc(2026, 3, 1))
    usage(tenant.test, (utc(2026, 3, 2, 10), 500), (utc(2026, 3, 9, 10), 500), cost="1")
    usage(tenant.test, (utc(2026, 3, 3, 10), 10), feature="images", cost="4")
    billing_close_periods(now=utc(2026, 4, 1, 0, 5))
    invoice = Invoice.objects.get(subscription=subscription)
    assert invoice.total_minor == 6000
    invoice_mark_paid(invoice=invoice, actor=SYSTEM, now=utc(2026, 4, 2))
    return invoice


def api(tenant, path: str, window: dict[str, str]) -> dict[str, Any]:
    response = tenant.api().get(path, window)
    assert response.status_code == 200, response.content
    return response.json()


def figures(item: dict[str, Any]) -> tuple[Decimal, Decimal, Decimal]:
    return cents(item["revenue"]), cents(item["cost"]), cents(item["margin"])


def test_whole_month_adds_up_to_the_invoice(tenant, web, march):
    # Invoice $60.00; events cost $6.00 (tokens 2, images 4).
    expected = (D("60.00"), D("6.00"), D("54.00"))
    detail = api(tenant, "/api/customers/cus_1", MONTH)
    assert figures(detail) == expected
    # Exactly, not only to the cent: the event revenue (10 + 1) and the recognised rows.
    assert D(detail["revenue"]) == D(60)
    # The base fee by cost share: tokens 2/6 of $49, images 4/6; the usage lines are
    # what the events already carry.
    features = {f["featureKey"]: f for f in detail["features"]}
    assert cents(features["tokens"]["revenue"]) == D("26.33")  # 10 + 16.33
    assert cents(features["images"]["revenue"]) == D("33.67")  # 1 + 32.67
    assert sum(D(f["revenue"]) for f in detail["features"]) == D(60)
    (row,) = api(tenant, "/api/customers", MONTH)["items"]
    assert figures(row) == expected
    overview = api(tenant, "/api/analytics/overview", MONTH)
    assert figures(overview) == expected
    assert sum(D(day["revenue"]) for day in overview["daily"]) == D(60)
    table = api(tenant, "/api/features", MONTH)["items"]
    assert sum(D(item["revenue"]) for item in table) == D(60)
    # The pages show the same figures.
    page = web.get("/dashboard/customers/cus_1", PAGE_MONTH).content
    shown = find_one(page, "section", data_testid="customer-totals")
    assert (cents(shown["data-revenue"]), cents(shown["data-cost"])) == expected[:2]
    (listed,) = find_all(
        web.get("/dashboard/customers/", PAGE_MONTH).content, "tr", data_customer=None
    )
    assert cents(listed["data-revenue"]) == D("60.00")
    home = find_one(web.get("/dashboard/", PAGE_MONTH).content, "section", data_testid="overview")
    assert cents(home["data-revenue"]) == D("60.00")
    rows = find_all(web.get("/dashboard/features/", PAGE_MONTH).content, "tr", data_feature=None)
    assert {r["data-feature"]: cents(r["data-revenue"]) for r in rows} == {
        "tokens": D("26.33"),
        "images": D("33.67"),
    }


def test_seven_days_show_seven_days_of_the_fee(tenant, web, march):
    # Mar 2..8: the events of Mar 2 (tokens, $5 revenue, $1 cost) and Mar 3 (images, $1,
    # $4), and 7 of March's 31 days of the $49 fee.
    fee = sum(
        (
            part
            for day, part in split_by_day(D(49), utc(2026, 3, 1), utc(2026, 4, 1)).items()
            if 2 <= day.day <= 8
        ),
        D(0),
    )
    assert cents(fee) == cents(D(49) * 7 / 31) == D("11.06")
    revenue = cents(D(6) + fee)
    expected = (revenue, D("5.00"), revenue - D(5))
    assert figures(api(tenant, "/api/customers/cus_1", WEEK)) == expected
    (row,) = api(tenant, "/api/customers", WEEK)["items"]
    assert figures(row) == expected
    assert figures(api(tenant, "/api/analytics/overview", WEEK)) == expected
    table = api(tenant, "/api/features", WEEK)["items"]
    assert cents(sum(D(item["revenue"]) for item in table)) == revenue
    shown = find_one(
        web.get("/dashboard/customers/cus_1", PAGE_WEEK).content,
        "section",
        data_testid="customer-totals",
    )
    assert cents(shown["data-revenue"]) == revenue
    home = find_one(web.get("/dashboard/", PAGE_WEEK).content, "section", data_testid="overview")
    assert cents(home["data-revenue"]) == revenue


def test_a_month_fee_is_recognised_day_by_day(tenant, march):
    rows = RecognisedRevenue.objects.filter(customer=march.customer, feature=None)
    by_day = {row.day: row.amount for row in rows}
    assert len(by_day) == 31
    assert sum(by_day.values()) == D(49)
    assert {cents(amount) for amount in by_day.values()} == {D("1.58")}


def test_usage_lines_the_events_carry_are_not_counted_twice(tenant, march):
    # The invoice's usage lines ($10 tokens, $1 images) equal the events' plan-rule
    # revenue: their net rows add nothing over the month.
    # The lines the events carry in full leave no row at all: only the base fee's.
    assert not RecognisedRevenue.objects.filter(customer=march.customer, feature__isnull=False)
    # Without double counting the month is the invoice: 60, not 71.
    assert D(api(tenant, "/api/analytics/overview", MONTH)["revenue"]) == D(60)


def test_void_removes_the_revenue_and_rebuild_restores_it(tenant, march):
    written = revenue_rebuild(environment_id=tenant.test.pk)
    assert written == RecognisedRevenue.objects.filter(environment_id=tenant.test.pk).count() > 0
    assert D(api(tenant, "/api/analytics/overview", MONTH)["revenue"]) == D(60)
    Invoice.objects.filter(pk=march.pk).update(status=Invoice.Status.VOID)
    revenue_rebuild(environment_id=tenant.test.pk)
    # Void: only the events' own revenue is left.
    assert D(api(tenant, "/api/analytics/overview", MONTH)["revenue"]) == D(11)


def test_outsiders_see_none_of_it(tenant, outsider, march):
    assert D(api(outsider, "/api/analytics/overview", MONTH)["revenue"]) == 0
    assert api(outsider, "/api/customers", MONTH)["items"] == []
    live = tenant.api(tenant.sk_live).get("/api/analytics/overview", MONTH).json()
    assert D(live["revenue"]) == 0


def test_the_rebuild_command(tenant, march):
    from django.core.management import call_command

    RecognisedRevenue.objects.all().delete()
    call_command("revenue_rebuild", "--environment", str(tenant.test.pk))
    assert D(api(tenant, "/api/analytics/overview", MONTH)["revenue"]) == D(60)


def test_an_invoice_line_beyond_the_events_revenue_counts_the_difference(tenant):
    """The event sends its own revenueAmount ($2, which wins over the plan rule's $5);
    the invoice bills the plan's $5 for the usage: the month shows the invoice, $54."""
    from apps.events.ingest import events_ingest
    from tests.billing.helpers import _small_catalog

    the_plan = plan(tenant.test, price="49", features={"tokens": per_unit("0.01")})
    subscription = subscribe(tenant.test, the_plan, at=utc(2026, 3, 1))
    _small_catalog()
    result = events_ingest(
        environment=tenant.test,
        items=[
            {
                "eventIdempotencyKey": "own-revenue",
                "eventName": "call",
                "customerReferenceId": "cus_1",
                "featureKey": "tokens",
                "usageUnits": "500",
                "costAmount": "1",
                "revenueAmount": "2",
                "occurredAt": utc(2026, 3, 5).isoformat(),
            }
        ],
        api_key_id=None,
    )
    assert result.accepted == 1, result.errors
    billing_close_periods(now=utc(2026, 4, 1, 0, 5))
    assert Invoice.objects.get(subscription=subscription).total_minor == 5400
    assert D(api(tenant, "/api/analytics/overview", MONTH)["revenue"]) == D(54)
    detail = api(tenant, "/api/customers/cus_1", MONTH)
    assert D(detail["revenue"]) == D(54)
    # All of it on tokens, the only feature used: its $2, the line's $3 beyond, the fee.
    (tokens,) = detail["features"]
    assert D(tokens["revenue"]) == D(54) and D(detail["unattributedRevenue"]) == 0


@pytest.mark.parametrize("amount", ["49", "-49", "0.01", "-0.07", "1000000.33"])
def test_day_split_adds_up_exactly_either_sign(amount):
    parts = split_by_day(D(amount), utc(2026, 3, 1, 9), utc(2026, 4, 1, 9))
    assert sum(parts.values()) == D(amount)
    assert len(parts) == 32  # 9:00 on the 1st to 9:00 on the 1st: 32 UTC days touched
    assert all((p <= 0) if D(amount) < 0 else (p >= 0) for p in parts.values())
