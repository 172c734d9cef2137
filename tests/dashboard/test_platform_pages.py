"""Platform pages: plans (and the rule editor), subscriptions, invoices, credit pools and
the customer page's platform section.

* every page renders for the owner; figures equal the API's (invoice totals, pool
  balances, the rule's readable price);
* the rule editor saves every pricing model through the plan services, shows their
  validation errors inline, adds tier rows without JavaScript, previews the text;
* a viewer gets 403 on every POST; an outsider 404 on every object URL; the other
  environment shows nothing; an htmx request gets only the partial.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.accounts.models import Role
from apps.billing.models import Invoice
from apps.billing.services import billing_close_periods
from apps.plans.models import Plan, PlanFeatureRule
from apps.subscriptions.models import Subscription
from tests.billing.helpers import plan, subscribe, usage, utc
from tests.conftest import web_as
from tests.credits.conftest import grant, make_pool
from tests.plans.helpers import make_feature, make_plan

from .html import find_all

pytestmark = pytest.mark.django_db

ADVANCE = Plan.BillingTiming.IN_ADVANCE
LISTS = [
    "/dashboard/plans/",
    "/dashboard/subscriptions/",
    "/dashboard/invoices/",
    "/dashboard/credits/",
]


@pytest.fixture
def platform(tenant):
    """cus_1 on an in-advance $49 plan since March 1st with March usage, closed in April
    (two invoices); a 'basic' plan to change to; a pool of 100 AI_CREDITS for cus_1."""
    make_feature(tenant.test, "tokens", unit_label="token")
    pro = plan(tenant.test, "pro", price="49", timing=ADVANCE)
    basic = plan(tenant.test, "basic", price="9", timing=ADVANCE)
    sub = subscribe(tenant.test, pro, at=utc(2026, 3, 1, 9))
    usage(tenant.test, (utc(2026, 3, 20), 300))
    billing_close_periods(now=utc(2026, 4, 1, 0, 5))
    pool = make_pool(tenant.test, "cus_1")
    grant(pool, "100")
    invoice = Invoice.objects.filter(subscription=sub).order_by("sequence").first()
    return {"plan": pro, "basic": basic, "sub": sub, "pool": pool, "invoice": invoice}


def object_urls(data) -> list[str]:
    return [
        f"/dashboard/plans/{data['plan'].pk}/",
        f"/dashboard/subscriptions/{data['sub'].pk}/",
        f"/dashboard/invoices/{data['invoice'].pk}/",
        f"/dashboard/credits/{data['pool'].pk}/",
    ]


def post_urls(data) -> list[tuple[str, dict]]:
    plan_id, sub_id = data["plan"].pk, data["sub"].pk
    return [
        ("/dashboard/plans/new/", {"key": "x", "name": "X"}),
        (f"/dashboard/plans/{plan_id}/rule/", {"feature": "tokens", "model": "included"}),
        (f"/dashboard/plans/{plan_id}/rule/tokens/remove/", {}),
        (f"/dashboard/plans/{plan_id}/activate/", {"confirm": "yes"}),
        (f"/dashboard/plans/{plan_id}/archive/", {}),
        (f"/dashboard/subscriptions/{sub_id}/cancel/", {"mode": "IMMEDIATE", "confirm": "yes"}),
        (f"/dashboard/subscriptions/{sub_id}/revert-cancel/", {}),
        (
            f"/dashboard/subscriptions/{sub_id}/change-plan/",
            {"plan": str(data["basic"].pk), "confirm": "yes"},
        ),
        (f"/dashboard/subscriptions/{sub_id}/drop-change/", {}),
        (f"/dashboard/invoices/{data['invoice'].pk}/pay/", {"confirm": "yes"}),
    ]


# --- rendering and numbers -------------------------------------------------------------------


def test_every_page_renders_for_the_owner(web, platform):
    for url in LISTS + object_urls(platform) + ["/dashboard/customers/cus_1"]:
        response = web.get(url)
        assert response.status_code == 200, url
    plans = web.get("/dashboard/plans/?status=all").content
    assert [r["data-plan"] for r in find_all(plans, "tr", data_plan=None)] == ["basic", "pro"]
    assert find_all(web.get("/dashboard/plans/?status=draft").content, "tr", data_plan=None) == []


def test_invoice_totals_equal_the_api(tenant, web, platform):
    api = tenant.api().get("/api/v1/client/billing/invoices").json()["items"]
    expected = {item["id"]: Decimal(str(item["amount"])) for item in api}
    rows = find_all(web.get("/dashboard/invoices/").content, "tr", data_invoice=None)
    assert {r["data-invoice"]: Decimal(r["data-amount"]) for r in rows} == expected
    assert len(rows) == 2
    one = platform["invoice"]
    page = web.get(f"/dashboard/invoices/{one.pk}/").content
    [total] = find_all(page, "dd", data_testid="invoice-total")
    assert Decimal(total["data-amount"]) == expected[str(one.pk)]
    assert f'href="/invoices/{one.pk}"'.encode() in page  # the printable page
    lines = find_all(page, "tr", data_line_amount=None)
    assert sum(Decimal(line["data-line-amount"]) for line in lines) == expected[str(one.pk)]
    due = find_all(web.get("/dashboard/invoices/?status=paid").content, "tr", data_invoice=None)
    assert due == []


def test_pool_balances_equal_the_api(tenant, web, platform):
    pools = tenant.api().get("/api/v1/client/credits/cus_1/pools").json()
    items = pools["items"] if isinstance(pools, dict) else pools
    [api_pool] = items
    [row] = find_all(web.get("/dashboard/credits/").content, "tr", data_pool=None)
    assert Decimal(row["data-balance"]) == Decimal(str(api_pool["balance"])) == Decimal(100)
    page = web.get(f"/dashboard/credits/{platform['pool'].pk}/").content
    [ledger_row] = find_all(page, "tr", data_sequence=None)
    assert Decimal(ledger_row["data-balance-after"]) == Decimal(100)


def test_customer_page_shows_subscription_pools_and_invoices(web, platform):
    page = web.get("/dashboard/customers/cus_1").content
    [section] = find_all(page, "section", data_testid="customer-platform")
    assert section["data-plan"] == "pro"
    assert find_all(page, "article", data_testid="plan")[0]["data-plan"] == "pro"
    [usage_row] = find_all(page, "tr", data_feature="tokens", data_used=None)
    assert usage_row["data-limit"] == ""  # per unit, no cap: unlimited
    assert find_all(page, "tr", data_pool=str(platform["pool"].pk))
    assert len(find_all(page, "tr", data_invoice=None)) == 2
    table = web.get("/dashboard/customers/?from=2026-03-01&to=2026-03-31").content
    assert len(find_all(table, "tr", data_customer="cus_1")) == 1
    assert find_all(table, "td", data_plan="pro") and find_all(table, "td", data_status="active")


# --- the plan editor ---------------------------------------------------------------------------


def graduated(**extra) -> dict:
    return {
        "feature": "tokens",
        "model": "graduated",
        "tier_count": "3",
        "tier-0-up_to": "1000",
        "tier-0-unit_price": "0",
        "tier-1-up_to": "10000",
        "tier-1-unit_price": "0.002",
        "tier-1-flat_fee": "5",
        "tier-2-up_to": "",
        "tier-2-unit_price": "0.001",
        **extra,
    }


def test_create_a_plan_with_a_graduated_rule_and_activate_it(tenant, web):
    make_feature(tenant.test, "tokens", unit_label="token")
    response = web.post(
        "/dashboard/plans/new/",
        {"key": "team", "name": "Team", "price_amount": "19.50", "interval_months": "1"},
    )
    assert response.status_code == 302
    team = Plan.objects.get(environment=tenant.test, key="team")
    assert team.status == Plan.Status.DRAFT and team.price_amount == Decimal("19.50")
    url = f"/dashboard/plans/{team.pk}/"
    preview = web.post(f"{url}rule/", graduated(action="preview"))
    assert preview.status_code == 200
    assert find_all(preview.content, "p", data_testid="rule-preview")
    assert not PlanFeatureRule.objects.filter(plan=team).exists()  # a preview saves nothing
    assert web.post(f"{url}rule/", graduated(action="save")).status_code == 302
    rule = PlanFeatureRule.objects.get(plan=team)
    assert rule.model == "graduated"
    assert rule.tiers == [
        {"upTo": "1000", "pricePerUnit": "0", "flatFee": "0"},
        {"upTo": "10000", "pricePerUnit": "0.002", "flatFee": "5"},
        {"upTo": None, "pricePerUnit": "0.001", "flatFee": "0"},
    ]
    api = tenant.api().get("/api/v1/client/plans/team/features").json()
    items = api["items"] if isinstance(api, dict) else api
    summary = items[0]["summary"]
    page = web.get(url).content.decode()
    assert summary in page and summary in preview.content.decode()
    assert web.post(f"{url}activate/", {"confirm": "yes"}).status_code == 302
    team.refresh_from_db()
    assert team.status == Plan.Status.ACTIVE
    assert find_all(web.get(url).content, "span", data_status="active")


@pytest.mark.parametrize(
    ("fields", "model", "check"),
    [
        (
            {"model": "included", "max_usage": "1000", "overage_price": "0.02"},
            "included",
            "max_usage",
        ),
        ({"model": "per_unit", "price_per_unit": "0.002"}, "per_unit", "unit_price"),
        (
            {"model": "package", "price_per_unit": "5", "package_size": "1000"},
            "package",
            "package_size",
        ),
        (
            {
                "model": "volume",
                "tier_count": "2",
                "tier-0-up_to": "100",
                "tier-0-unit_price": "0.01",
                "tier-1-unit_price": "0.005",
                "max_usage": "500",
                "reset_interval": "day",
            },
            "volume",
            "reset_interval",
        ),
    ],
)
def test_every_pricing_model_saves(tenant, web, fields, model, check):
    make_feature(tenant.test, "tokens")
    draft = make_plan(tenant.test, "draft", features={}, active=False)
    response = web.post(f"/dashboard/plans/{draft.pk}/rule/", {"feature": "tokens", **fields})
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = PlanFeatureRule.objects.get(plan=draft)
    assert rule.model == model
    assert getattr(rule, check) not in (None, "")


def test_validation_errors_are_shown_inline(tenant, web):
    make_feature(tenant.test, "tokens")
    draft = make_plan(tenant.test, "draft", features={}, active=False)
    url = f"/dashboard/plans/{draft.pk}/rule/"
    # Tiers not ascending: the services' message, on the page, nothing saved.
    bad = graduated(**{"tier-1-up_to": "500"})
    response = web.post(url, bad)
    assert response.status_code == 400
    assert b'data-field="tiers.1.upTo"' in response.content
    assert b'value="500"' in response.content  # what was typed stays
    # Not a number.
    response = web.post(url, {"feature": "tokens", "model": "per_unit", "price_per_unit": "abc"})
    assert response.status_code == 400 and b"Enter a number." in response.content
    # Negative price: the services' message.
    response = web.post(url, {"feature": "tokens", "model": "per_unit", "price_per_unit": "-1"})
    assert response.status_code == 400 and b"May not be negative." in response.content
    assert not PlanFeatureRule.objects.filter(plan=draft).exists()
    # A taken key when creating a plan.
    response = web.post("/dashboard/plans/new/", {"key": "draft", "name": "Again"})
    assert response.status_code == 400 and b"Already exists." in response.content
    # An active plan's rules are frozen: 409 with the message.
    frozen = plan(tenant.test, "frozen")
    response = web.post(f"/dashboard/plans/{frozen.pk}/rule/", graduated())
    assert response.status_code == 409 and b"cannot change" in response.content


def test_tier_rows_are_added_without_javascript_and_with_htmx(tenant, web):
    make_feature(tenant.test, "tokens")
    draft = make_plan(tenant.test, "draft", features={}, active=False)
    page = web.get(f"/dashboard/plans/{draft.pk}/?tiers=5").content
    assert len(find_all(page, "tr", data_tier=None)) == 5
    body = graduated(action="add_tier")
    response = web.post(f"/dashboard/plans/{draft.pk}/rule/", body)
    assert response.status_code == 200
    assert len(find_all(response.content, "tr", data_tier=None)) == 4
    assert b'value="10000"' in response.content
    partial = web.post(f"/dashboard/plans/{draft.pk}/rule/", body, HTTP_HX_REQUEST="true")
    assert b"<html" not in partial.content
    assert len(find_all(partial.content, "tr", data_tier=None)) == 4
    # An htmx preview with an error: 200 (htmx swaps only 2xx), the error in the form.
    bad = graduated(action="preview", **{"tier-1-up_to": "500"})
    partial = web.post(f"/dashboard/plans/{draft.pk}/rule/", bad, HTTP_HX_REQUEST="true")
    assert partial.status_code == 200 and b"<html" not in partial.content
    assert b'data-field="tiers.1.upTo"' in partial.content
    assert not PlanFeatureRule.objects.filter(plan=draft).exists()


# --- subscriptions and invoices --------------------------------------------------------------


def test_subscription_actions(web, platform):
    sub = platform["sub"]
    url = f"/dashboard/subscriptions/{sub.pk}/"
    response = web.post(f"{url}cancel/", {"mode": "END_OF_PERIOD"}, follow=True)
    assert [str(m) for m in response.context["messages"]] == ["Subscription cancelled."]
    sub.refresh_from_db()
    assert sub.cancel_at is not None and sub.status != Subscription.Status.CANCELLED
    assert find_all(web.get(url).content, "dd", data_testid="cancel-at")
    web.post(f"{url}revert-cancel/")
    sub.refresh_from_db()
    assert sub.cancel_at is None
    response = web.post(
        f"{url}change-plan/",
        {"plan": str(platform["basic"].pk), "timing": "period_end", "confirm": "yes"},
    )
    assert response.status_code == 302
    page = web.get(url).content
    assert find_all(page, "dd", data_testid="scheduled-change")
    web.post(f"{url}cancel/", {"mode": "IMMEDIATE", "confirm": "yes"})
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.CANCELLED
    # A second cancel is refused by the services: a message, not an error page.
    response = web.post(f"{url}cancel/", {"mode": "IMMEDIATE", "confirm": "yes"}, follow=True)
    assert response.status_code == 200
    listed = web.get("/dashboard/subscriptions/?status=cancelled&q=cus_").content
    assert [r["data-subscription"] for r in find_all(listed, "tr", data_subscription=None)] == [
        str(sub.pk)
    ]
    assert (
        find_all(
            web.get("/dashboard/subscriptions/?status=live").content, "tr", data_subscription=None
        )
        == []
    )


def test_mark_an_invoice_paid(web, platform):
    invoice = platform["invoice"]
    response = web.post(
        f"/dashboard/invoices/{invoice.pk}/pay/", {"reference": "wire 42", "confirm": "yes"}
    )
    assert response.status_code == 302
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID and invoice.payment_reference == "wire 42"
    page = web.get(f"/dashboard/invoices/{invoice.pk}/").content
    assert find_all(page, "span", data_status="paid")
    assert b"invoice-pay" not in page


# --- who sees and changes what -----------------------------------------------------------------


def test_a_viewer_reads_but_every_post_is_403(tenant, platform):
    viewer = web_as(tenant.add_member(Role.VIEWER))
    for url in LISTS + object_urls(platform):
        response = viewer.get(url)
        assert response.status_code == 200, url
        assert b'method="post"' not in response.content.split(b'id="main"')[-1] or url.endswith(
            "/credits/"
        ), url
    for url, body in post_urls(platform):
        assert viewer.post(url, body).status_code == 403, url
    platform["sub"].refresh_from_db()
    assert platform["sub"].status == Subscription.Status.ACTIVE
    assert Invoice.objects.filter(status=Invoice.Status.PAID).count() == 0


def test_an_outsider_gets_404_on_every_object(tenant, outsider, platform):
    spy = web_as(outsider.owner)
    for url in object_urls(platform):
        assert spy.get(url).status_code == 404, url
    for url, body in post_urls(platform)[1:]:
        assert spy.post(url, body).status_code == 404, url
    for url in LISTS:
        content = spy.get(url).content
        assert b"cus_1" not in content and b"pro" not in content.split(b'id="main"')[-1], url
    assert Plan.objects.get(pk=platform["plan"].pk).status == Plan.Status.ACTIVE


def test_the_other_environment_sees_nothing(web, platform):
    web.post("/dashboard/switch-environment/", {"env": "live"})
    for url in LISTS:
        content = web.get(url).content
        for row in ("data-plan=", "data-subscription=", "data-invoice=", "data-pool="):
            assert row.encode() not in content, (url, row)
    for url in object_urls(platform):
        assert web.get(url).status_code == 404, url


def test_signed_out_visitors_are_sent_to_log_in(platform):
    for url in LISTS + object_urls(platform):
        response = Client().get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


def test_htmx_gets_only_the_partial(web, platform):
    for url, marker in [
        ("/dashboard/plans/?status=active", b'id="plans-table"'),
        ("/dashboard/subscriptions/?q=cus_1", b'id="subscriptions-table"'),
        ("/dashboard/invoices/?status=due", b'id="invoices"'),
        ("/dashboard/credits/?q=cus", b'id="pools"'),
        (f"/dashboard/credits/{platform['pool'].pk}/", b'id="ledger"'),
    ]:
        response = web.get(url, HTTP_HX_REQUEST="true")
        assert response.status_code == 200
        assert marker in response.content, url
        assert b"<html" not in response.content and b"<nav" not in response.content, url


def test_list_queries_do_not_grow_with_rows(tenant, web, platform):
    lists = ["/dashboard/plans/", "/dashboard/subscriptions/", "/dashboard/invoices/"]

    def counts() -> list[int]:
        found = []
        for url in lists:
            with CaptureQueriesContext(connection) as queries:
                assert web.get(url).status_code == 200
            found.append(len(queries))
        return found

    before = counts()
    for n in range(3):
        extra = plan(tenant.test, f"extra-{n}", price="5", timing=ADVANCE)
        subscribe(tenant.test, extra, at=utc(2026, 3, 1, 9), reference=f"cus_x{n}")
    billing_close_periods(now=utc(2026, 4, 1, 0, 5))
    assert Invoice.objects.filter(environment=tenant.test).count() > 2
    assert counts() == before


def test_edit_prefills_the_editor_with_the_rule(tenant, web):
    make_feature(tenant.test, "tokens")
    draft = make_plan(tenant.test, "draft", features={}, active=False)
    url = f"/dashboard/plans/{draft.pk}/"
    body = graduated(max_usage="50000", overage_price="0.004")
    assert web.post(f"{url}rule/", body).status_code == 302
    page = web.get(f"{url}?feature=tokens").content
    assert len(find_all(page, "tr", data_tier=None)) == 3
    for value in ("1000", "10000", "0.002", "5", "0.001", "50000", "0.004"):
        assert f'value="{value}"'.encode() in page, value
    assert find_all(page, "option", value="graduated", selected=None)
    # Saving it back unchanged gives the same rule.
    before = PlanFeatureRule.objects.get(plan=draft).tiers
    assert web.post(f"{url}rule/", body).status_code == 302
    assert PlanFeatureRule.objects.get(plan=draft).tiers == before
    assert web.post(f"{url}rule/tokens/remove/").status_code == 302
    assert not PlanFeatureRule.objects.filter(plan=draft).exists()
