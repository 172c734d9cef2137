"""Platform objects created and edited in the browser, through the services the API uses:
customers, features, subscriptions (subscribe; change plan with the proration shown before
confirming), credit models, plan allocations, grants and deductions.

Errors are shown beside the form's own fields with its labels (never an API field path);
empty states name the next step; viewers get 403 on every write; another organization or
environment gets 404 on every object URL and sees none of it.
"""

from __future__ import annotations

import datetime as dt
import html
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.accounts.models import Role
from apps.billing.models import Invoice
from apps.billing.services import billing_prorate_changes
from apps.credits.models import CreditGrant, CreditModel, CreditPool, PlanCreditAllocation
from apps.customers.models import Customer
from apps.features.models import Feature
from apps.plans.models import Plan
from apps.subscriptions.models import Subscription, SubscriptionChange
from tests.billing.helpers import plan, subscribe
from tests.conftest import web_as
from tests.credits.conftest import grant, make_pool
from tests.factories import make_customer

from .html import find_all, find_one

pytestmark = pytest.mark.django_db

ADVANCE = Plan.BillingTiming.IN_ADVANCE


def text(response) -> str:
    return html.unescape(response.content.decode())


def error_after(response, name: str) -> str:
    """The text of the form's error messages (``<small class="error">``) on the page."""
    page = text(response)
    assert 'class="error"' in page, f"no field error on the page for {name}"
    return page


# --- customers -----------------------------------------------------------------------------


def test_create_and_edit_a_customer(tenant, web):
    form = web.get("/dashboard/catalog/customers/new/")
    assert form.status_code == 200
    assert find_one(form.content, "input", name="reference_id")
    response = web.post(
        "/dashboard/catalog/customers/new/",
        {"reference_id": "acme-42", "email": "ops@acme.io", "first_name": "Ada"},
    )
    assert response.status_code == 302
    assert response["Location"] == "/dashboard/customers/acme-42"
    customer = Customer.objects.get(environment=tenant.test, reference_id="acme-42")
    assert (customer.email, customer.first_name, customer.source) == (
        "ops@acme.io",
        "Ada",
        "manual",
    )
    # The API sees the same customer.
    api = tenant.api().get("/api/v1/client/customers/acme-42")
    assert api.status_code == 200 and api.json()["email"] == "ops@acme.io"

    edit = f"/dashboard/catalog/customers/{customer.pk}/edit/"
    assert find_one(web.get(edit).content, "input", name="email")["value"] == "ops@acme.io"
    assert web.post(edit, {"email": "billing@acme.io", "phone": "+44 1"}).status_code == 302
    customer.refresh_from_db()
    assert (customer.email, customer.phone) == ("billing@acme.io", "+44 1")


def test_customer_errors_use_the_forms_labels(tenant, web):
    make_customer(tenant.test, "taken")
    response = web.post("/dashboard/catalog/customers/new/", {"reference_id": "taken"})
    assert response.status_code == 409
    page = text(response)
    assert '<small class="error">Already exists.</small>' in page
    assert "customerReferenceId:" not in page
    assert find_one(response.content, "input", name="reference_id")["aria-invalid"] == "true"

    response = web.post(
        "/dashboard/catalog/customers/new/", {"reference_id": "new-one", "email": "not-an-email"}
    )
    assert response.status_code == 400
    assert find_one(response.content, "input", name="email")["aria-invalid"] == "true"
    assert not Customer.objects.filter(reference_id="new-one").exists()
    response = web.post("/dashboard/catalog/customers/new/", {"reference_id": "   "})
    assert response.status_code == 400


def test_creating_a_customer_an_event_named_claims_it(tenant, web):
    seen = Customer.objects.create(
        environment=tenant.test, reference_id="from-events", source=Customer.Source.EVENT
    )
    response = web.post(
        "/dashboard/catalog/customers/new/", {"reference_id": "from-events", "last_name": "Lee"}
    )
    assert response.status_code == 302
    seen.refresh_from_db()
    assert (seen.source, seen.last_name) == ("manual", "Lee")


# --- features ------------------------------------------------------------------------------


def test_a_fresh_plan_editor_says_why_it_has_no_features(tenant, web):
    draft = web.post("/dashboard/plans/new/", {"key": "starter", "name": "Starter"})
    page = web.get(draft["Location"])
    note = find_one(page.content, "div", data_testid="no-features")
    assert note is not None
    assert 'href="/dashboard/catalog/features/#new-feature"' in page.content.decode()

    response = web.post(
        "/dashboard/catalog/features/",
        {"key": "chat", "name": "Chat", "unit_label": "message", "is_enabled": "on"},
    )
    assert response.status_code == 302
    feature = Feature.objects.get(environment=tenant.test, key="chat")
    assert (feature.name, feature.unit_label, feature.is_enabled) == ("Chat", "message", True)
    page = web.get(draft["Location"])
    assert find_all(page.content, "div", data_testid="no-features") == []
    assert find_one(page.content, "option", value="chat")


def test_edit_a_feature_and_duplicate_keys_are_shown_beside_the_key(tenant, web):
    web.post("/dashboard/catalog/features/", {"key": "search", "is_enabled": "on"})
    feature = Feature.objects.get(environment=tenant.test, key="search")
    response = web.post("/dashboard/catalog/features/", {"key": "search"})
    assert response.status_code == 409
    assert find_one(response.content, "input", name="key")["aria-invalid"] == "true"
    edit = f"/dashboard/catalog/features/{feature.pk}/edit/"
    assert web.post(edit, {"name": "Web search", "unit_label": "query"}).status_code == 302
    feature.refresh_from_db()
    assert (feature.name, feature.unit_label, feature.is_enabled) == ("Web search", "query", False)
    listed = web.get("/dashboard/catalog/features/").content
    assert [r["data-feature"] for r in find_all(listed, "tr", data_feature=None)] == ["search"]


# --- subscriptions -------------------------------------------------------------------------


def test_empty_states_give_the_next_step(tenant, web):
    listed = web.get("/dashboard/subscriptions/")
    empty = find_one(listed.content, "td", data_testid="empty-state")
    assert empty is not None and "No subscriptions yet — " in text(listed)
    assert find_one(listed.content, "a", href="/dashboard/subscriptions/new/", role="button")
    filtered = web.get("/dashboard/subscriptions/?status=cancelled")
    assert "No subscriptions match these filters." in text(filtered)
    form = web.get("/dashboard/subscriptions/new/")
    assert find_one(form.content, "div", data_testid="no-active-plans")
    credits = web.get("/dashboard/credits/")
    assert find_one(credits.content, "p", data_testid="no-credit-models")


def test_subscribe_a_customer(tenant, web):
    pro = plan(tenant.test, "pro", price="49", timing=ADVANCE)
    make_customer(tenant.test, "cus_9")
    response = web.post(
        "/dashboard/subscriptions/new/", {"customer": "nobody", "plan": str(pro.pk)}
    )
    assert response.status_code == 400
    assert "No customer has this reference: create the customer first." in text(response)
    assert 'href="/dashboard/catalog/customers/new/?ref=nobody"' in response.content.decode()
    response = web.post(
        "/dashboard/subscriptions/new/",
        {"customer": "cus_9", "plan": str(pro.pk), "trial_days": "x"},
    )
    assert response.status_code == 400
    assert "Enter a whole number." in text(response)

    response = web.post(
        "/dashboard/subscriptions/new/",
        {"customer": "cus_9", "plan": str(pro.pk), "trial_days": "14", "grace_period_days": "3"},
    )
    assert response.status_code == 302
    sub = Subscription.objects.get(environment=tenant.test, customer__reference_id="cus_9")
    assert sub.status == Subscription.Status.TRIALING and sub.plan_id == pro.pk
    assert response["Location"] == f"/dashboard/subscriptions/{sub.pk}/"

    # A second live subscription is the services' 409, shown above the form.
    again = web.post("/dashboard/subscriptions/new/", {"customer": "cus_9", "plan": str(pro.pk)})
    assert again.status_code == 409
    assert find_one(again.content, "div", data_testid="form-errors")
    assert Subscription.objects.filter(customer__reference_id="cus_9").count() == 1


def test_a_draft_plan_cannot_be_subscribed_to(tenant, web):
    make_customer(tenant.test, "cus_9")
    web.post("/dashboard/plans/new/", {"key": "draft", "name": "Draft"})
    draft = Plan.objects.get(environment=tenant.test, key="draft")
    response = web.post(
        "/dashboard/subscriptions/new/", {"customer": "cus_9", "plan": str(draft.pk)}
    )
    assert response.status_code in (400, 409)
    assert not Subscription.objects.filter(customer__reference_id="cus_9").exists()


def test_an_upgrade_shows_the_proration_the_billing_cycle_then_invoices(tenant, web):
    pro = plan(tenant.test, "pro", price="49", timing=ADVANCE)
    scale = plan(tenant.test, "scale", price="199", timing=ADVANCE)
    sub = subscribe(tenant.test, pro, at=timezone.now() - dt.timedelta(days=10))
    url = f"/dashboard/subscriptions/{sub.pk}/change-plan/"

    review = web.post(url, {"plan": str(scale.pk), "timing": ""})
    assert review.status_code == 200
    proration = find_one(review.content, "div", data_testid="proration")
    assert proration["data-timing"] == "now"
    lines = [Decimal(r["data-amount"]) for r in find_all(review.content, "tr", data_amount=None)]
    assert len(lines) == 2 and lines[0] < 0 < lines[1]  # the old plan's rest back, the new one's
    shown = Decimal(proration["data-total"])
    assert shown == sum(lines) and shown > 0
    assert not SubscriptionChange.objects.filter(subscription=sub).exists()  # nothing yet

    assert web.post(url, {"plan": str(scale.pk), "timing": "", "confirm": "yes"}).status_code == 302
    sub.refresh_from_db()
    assert sub.plan_id == scale.pk
    assert billing_prorate_changes(now=timezone.now()) == 1
    invoice = Invoice.objects.get(subscription=sub, reason=Invoice.Reason.PLAN_CHANGE)
    billed = Decimal(invoice.total_minor) / 100
    # The invoice is made a moment after the preview: at most a cent apart.
    assert abs(billed - shown) <= Decimal("0.01")
    assert invoice.lines.count() == 2


def test_a_downgrade_at_the_period_end_says_nothing_is_prorated(tenant, web):
    pro = plan(tenant.test, "pro", price="49", timing=ADVANCE)
    basic = plan(tenant.test, "basic", price="9", timing=ADVANCE)
    sub = subscribe(tenant.test, pro, at=timezone.now() - dt.timedelta(days=3))
    url = f"/dashboard/subscriptions/{sub.pk}/change-plan/"
    review = web.post(url, {"plan": str(basic.pk)})
    assert find_one(review.content, "div", data_testid="proration")["data-timing"] == "period_end"
    assert "Nothing is prorated" in text(review)
    assert web.post(url, {"plan": str(basic.pk), "confirm": "yes"}).status_code == 302
    change = SubscriptionChange.objects.get(subscription=sub)
    assert change.status == SubscriptionChange.Status.PENDING


# --- credits -------------------------------------------------------------------------------


def test_credit_models_allocations_grants_and_deductions(tenant, web):
    pro = plan(tenant.test, "pro", price="49", timing=ADVANCE)
    make_customer(tenant.test, "cus_1")
    response = web.post(
        "/dashboard/credits/models/new/",
        {"name": "AI credits", "denomination": "AI CREDITS", "rollover_policy": "none"},
    )
    assert response.status_code == 400
    assert "Letters, digits, _ and -" in text(response)
    response = web.post(
        "/dashboard/credits/models/new/",
        {"name": "AI credits", "denomination": "AI_CREDITS", "rollover_policy": "none"},
    )
    assert response.status_code == 302
    model = CreditModel.objects.get(environment=tenant.test, denomination="AI_CREDITS")
    again = web.post("/dashboard/credits/models/new/", {"name": "x", "denomination": "AI_CREDITS"})
    assert again.status_code == 409 and "Already defined." in text(again)

    response = web.post(
        "/dashboard/credits/allocations/new/",
        {"plan": "pro", "credit_model": str(model.pk), "credit_amount": "500"},
    )
    assert response.status_code == 302
    allocation = PlanCreditAllocation.objects.get(environment=tenant.test, plan_key=pro.key)
    assert allocation.credit_amount == Decimal(500)

    body = {
        "customer": "cus_1",
        "credit_model": str(model.pk),
        "amount": "250",
        "grant_type": "promotional",
        "grant_token": "tok-1",
    }
    response = web.post("/dashboard/credits/grant/", body)
    assert response.status_code == 302
    pool = CreditPool.objects.get(environment=tenant.test, customer__reference_id="cus_1")
    assert response["Location"] == f"/dashboard/credits/{pool.pk}/"
    # The same form sent twice grants once.
    assert web.post("/dashboard/credits/grant/", body).status_code == 302
    assert CreditGrant.objects.filter(pool=pool).count() == 1
    pool.refresh_from_db()
    assert pool.balance == Decimal(250)
    api = tenant.api().get("/api/v1/client/credits/cus_1/pools").json()
    assert Decimal(str(api["items"][0]["balance"])) == pool.balance

    bad = web.post("/dashboard/credits/grant/", {**body, "amount": "-5", "grant_token": "t2"})
    assert bad.status_code == 400 and "amount" not in find_all(bad.content, "small")
    assert find_one(bad.content, "input", name="amount")["aria-invalid"] == "true"

    deduct = f"/dashboard/credits/{pool.pk}/deduct/"
    assert (
        web.post(deduct, {"deduct_amount": "50", "description": "goodwill fix"}).status_code == 302
    )
    pool.refresh_from_db()
    assert pool.balance == Decimal(200)
    # A hard-limit pool refuses to go below zero: shown on the page, nothing written.
    refused = web.post(deduct, {"deduct_amount": "1000"})
    assert refused.status_code == 400
    assert find_one(refused.content, "div", data_testid="form-errors")
    pool.refresh_from_db()
    assert pool.balance == Decimal(200)

    more = f"/dashboard/credits/{pool.pk}/grant/"
    assert (
        web.post(more, {"amount": "5", "grant_type": "refund", "grant_token": "t3"}).status_code
        == 302
    )
    pool.refresh_from_db()
    assert pool.balance == Decimal(205)

    assert web.post(f"/dashboard/credits/allocations/{allocation.pk}/remove/").status_code == 302
    assert not PlanCreditAllocation.objects.filter(pk=allocation.pk).exists()
    assert web.post(f"/dashboard/credits/models/{model.pk}/archive/").status_code == 302
    model.refresh_from_db()
    assert model.archived_at is not None


# --- who may ------------------------------------------------------------------------------


@pytest.fixture
def objects(tenant):
    customer = make_customer(tenant.test, "cus_1")
    pool = make_pool(tenant.test, "cus_1")
    grant(pool, "10")
    feature = Feature.objects.create(environment=tenant.test, key="chat")
    allocation = PlanCreditAllocation.objects.create(
        environment=tenant.test, plan_key="pro", credit_model=pool.credit_model, credit_amount=5
    )
    return {"customer": customer, "pool": pool, "feature": feature, "allocation": allocation}


def writes(o) -> list[tuple[str, dict]]:
    model = o["pool"].credit_model
    return [
        ("/dashboard/catalog/customers/new/", {"reference_id": "x"}),
        (f"/dashboard/catalog/customers/{o['customer'].pk}/edit/", {"email": "x@y.io"}),
        ("/dashboard/catalog/features/", {"key": "x"}),
        (f"/dashboard/catalog/features/{o['feature'].pk}/edit/", {"name": "X"}),
        ("/dashboard/subscriptions/new/", {"customer": "cus_1", "plan": "pro"}),
        ("/dashboard/credits/models/new/", {"name": "X", "denomination": "X"}),
        (f"/dashboard/credits/models/{model.pk}/archive/", {}),
        ("/dashboard/credits/allocations/new/", {"plan": "pro", "credit_amount": "1"}),
        (f"/dashboard/credits/allocations/{o['allocation'].pk}/remove/", {}),
        ("/dashboard/credits/grant/", {"customer": "cus_1", "amount": "1"}),
        (f"/dashboard/credits/{o['pool'].pk}/grant/", {"amount": "1"}),
        (f"/dashboard/credits/{o['pool'].pk}/deduct/", {"deduct_amount": "1"}),
    ]


def _unchanged(tenant, o) -> None:
    o["pool"].refresh_from_db()
    assert o["pool"].balance == Decimal(10)
    assert CreditModel.objects.get(pk=o["pool"].credit_model_id).archived_at is None
    assert PlanCreditAllocation.objects.filter(pk=o["allocation"].pk).exists()
    assert Customer.objects.get(pk=o["customer"].pk).email == ""
    assert not Customer.objects.filter(reference_id="x").exists()
    assert not Feature.objects.filter(key="x").exists()


def test_a_viewer_reads_but_cannot_write(tenant, objects):
    viewer = web_as(tenant.add_member(Role.VIEWER))
    for url in ("/dashboard/catalog/features/", "/dashboard/credits/models/"):
        page = viewer.get(url)
        assert page.status_code == 200
        assert b'method="post"' not in page.content.split(b'id="main"')[-1], url
    for url, body in writes(objects):
        assert viewer.post(url, body).status_code == 403, url
    assert viewer.get("/dashboard/catalog/customers/new/").status_code == 403
    _unchanged(tenant, objects)


def test_another_organization_gets_404_and_sees_nothing(tenant, outsider, objects):
    spy = web_as(outsider.owner)
    object_urls = [url for url, _ in writes(objects) if str(objects["pool"].pk) in url]
    object_urls += [
        f"/dashboard/catalog/customers/{objects['customer'].pk}/edit/",
        f"/dashboard/catalog/features/{objects['feature'].pk}/edit/",
        f"/dashboard/credits/models/{objects['pool'].credit_model_id}/archive/",
        f"/dashboard/credits/allocations/{objects['allocation'].pk}/remove/",
    ]
    for url in object_urls:
        assert spy.post(url, {"amount": "1", "deduct_amount": "1"}).status_code == 404, url
    assert spy.get(object_urls[-4]).status_code == 404
    # Names of the tenant's objects do not resolve for the outsider either.
    response = spy.post(
        "/dashboard/credits/grant/",
        {"customer": "cus_1", "amount": "1", "credit_model": str(objects["pool"].credit_model_id)},
    )
    assert response.status_code == 400
    assert (
        spy.post("/dashboard/subscriptions/new/", {"customer": "cus_1", "plan": "pro"}).status_code
        == 400
    )
    for url in ("/dashboard/catalog/features/", "/dashboard/credits/models/"):
        content = spy.get(url).content
        assert b"data-denomination=" not in content and b"data-feature=" not in content, url
    _unchanged(tenant, objects)


def test_the_other_environment_sees_nothing(web, objects):
    web.post("/dashboard/switch-environment/", {"env": "live"})
    assert find_all(web.get("/dashboard/catalog/features/").content, "tr", data_feature=None) == []
    assert b"data-denomination=" not in web.get("/dashboard/credits/models/").content
    assert (
        web.get(f"/dashboard/catalog/customers/{objects['customer'].pk}/edit/").status_code == 404
    )
    assert (
        web.post(
            f"/dashboard/credits/{objects['pool'].pk}/deduct/", {"deduct_amount": "1"}
        ).status_code
        == 404
    )
