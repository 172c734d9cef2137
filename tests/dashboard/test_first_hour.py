"""A newcomer's first hour in the dashboard: event filters that find "wayne", error
messages in the words on screen, scope and role explanations, the navigation of an
Observe organization, the invoices' cycle note, and unknown objects inside the chrome."""

from __future__ import annotations

import pytest

from apps.accounts.models import Organization, Role
from apps.customers.models import Customer
from tests.conftest import web_as

from .conftest import at, event, ingest
from .html import find_all, find_one

pytestmark = pytest.mark.django_db


def shown_ids(content: bytes) -> list[int]:
    return [int(row["data-event-id"]) for row in find_all(content, "tr", data_event_id=None)]


@pytest.fixture
def wayne(tenant, outsider, catalog):
    """Events of cus_wayne (Wayne Enterprises), cus_kent and, elsewhere, other waynes."""
    api = tenant.api()
    ids = ingest(
        api,
        event("cus_wayne", "Chat_Summary", when=at(1), cost="0.1", modelProvider="openai"),
        event("cus_kent", "search", when=at(1, 13), cost="0.2", modelProvider="anthropic"),
        event("acme_42", "search", when=at(1, 14), cost="0.3"),
    )
    Customer.objects.filter(environment=tenant.test, reference_id="acme_42").update(
        first_name="Bruce", last_name="Wayne", email="bruce@wayne.example"
    )
    # The same names in the live environment and in another organization: never listed.
    ingest(tenant.api(tenant.sk_live), event("cus_wayne", "chat", when=at(1), cost="1"))
    ingest(outsider.api(), event("cus_wayne", "chat", when=at(1), cost="1"))
    return dict(zip(["wayne", "kent", "acme"], ids, strict=True))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("customer=wayne", {"wayne", "acme"}),  # reference, and the name / email
        ("customer=WAYNE", {"wayne", "acme"}),
        ("customer=cus_wayne", {"wayne"}),
        ("customer=Bruce+Wayne", {"acme"}),  # words of the name
        ("customer=kent", {"kent"}),
        ("customer=nobody", set()),
        ("feature=summary", {"wayne"}),
        ("feature=SEARCH", {"kent", "acme"}),
        ("provider=OpenAI", {"wayne"}),
    ],
)
def test_event_filters_match_part_of_a_name_in_any_case(tenant, web, wayne, query, expected):
    response = web.get(f"/dashboard/events/?{query}")
    assert response.status_code == 200
    assert set(shown_ids(response.content)) == {wayne[name] for name in expected}


def test_the_search_also_filters_the_csv_and_the_live_tail(tenant, web, wayne):
    csv_text = web.get("/dashboard/export/events.csv?customer=wayn").getvalue().decode()
    assert "cus_wayne" in csv_text and "cus_kent" not in csv_text
    page = web.get("/dashboard/events/?customer=wayne").content
    tail = find_one(page, "tbody", id="tail")["hx-get"]
    (_new_kent, new_wayne) = ingest(
        tenant.api(),
        event("cus_kent", "search", when=at(0, 0), cost="0.1"),
        event("cus_wayne", "search", when=at(0, 0, 1), cost="0.1"),
    )
    fresh = web.get(tail, HTTP_HX_REQUEST="true").content
    assert shown_ids(fresh) == [new_wayne]


def test_more_filters_fold_and_open_when_one_is_set(web, wayne):
    plain = web.get("/dashboard/events/").content
    assert "open" not in find_one(plain, "details", data_testid="more-filters")
    find_one(plain, "input", name="customer")  # always in view
    filtered = web.get("/dashboard/events/?model=gpt-4o&trace=t").content
    assert "open" in find_one(filtered, "details", data_testid="more-filters")
    assert b"More filters (2 set)" in filtered


def test_key_form_errors_sit_under_their_fields_in_screen_words(tenant, web):
    response = web.post(
        "/dashboard/keys/new/", {"kind": "ck", "name": "x", "customer_reference_id": "cus_none"}
    )
    assert response.status_code == 400
    assert b'data-testid="error-customer">No customer has this reference.</small>' in (
        response.content
    )
    response = web.post("/dashboard/keys/new/", {"kind": "ck", "name": "x"})
    assert response.status_code == 400
    assert b'data-testid="error-customer">A customer key needs a customer.</small>' in (
        response.content
    )
    assert b"customerReferenceId" not in response.content
    response = web.post("/dashboard/keys/new/", {"kind": "obs", "name": "x"})
    assert response.status_code == 400
    assert b'data-testid="error-scopes">Choose at least one scope.</small>' in response.content


def test_model_price_errors_name_the_labels_on_screen(web):
    response = web.post(
        "/dashboard/settings/model-prices/new/",
        {"kind": "rates", "provider": "openai", "model": "gpt-4o"},
    )
    assert response.status_code == 400
    text = response.content.decode()
    assert "Input, USD / 1M tokens" in text
    for api_name in ("inputCostPerMillion", "outputCostPerMillion", "discountPercent"):
        assert api_name not in text


def test_scopes_and_roles_are_explained(tenant, web):
    keys = web.get("/dashboard/keys/").content.decode()
    assert "events.write: record events" in keys
    assert "admin: manage API keys, members" in keys
    members = web.get("/dashboard/members/").content
    find_one(members, "dl", data_testid="role-help")
    for role in ("Viewer", "Member", "Admin", "Owner"):
        assert f"<dt>{role}</dt>".encode() in members


def test_an_observe_organization_sees_no_platform_pages_in_the_menu(tenant, web):
    platform = web.get("/dashboard/").content
    find_one(platform, data_testid="nav-platform")
    assert b'href="/dashboard/plans/"' in platform
    Organization.objects.filter(pk=tenant.org.pk).update(mode="observe")
    observe = web.get("/dashboard/").content
    find_one(observe, data_testid="nav-platform-off")
    for path in ("/dashboard/plans/", "/dashboard/subscriptions/", "/dashboard/invoices/"):
        assert f'href="{path}"'.encode() not in observe
    # Switching in Settings brings them back.
    web.post("/dashboard/settings/", {"name": tenant.org.name, "mode": "platform"})
    assert b'href="/dashboard/plans/"' in web.get("/dashboard/").content


def test_the_menu_button_is_a_checkbox_and_label_working_without_javascript(web):
    page = web.get("/dashboard/").content
    toggle = find_one(page, "input", id="nav-toggle")
    assert toggle["type"] == "checkbox"
    assert find_one(page, "label", data_testid="nav-toggle")["for"] == "nav-toggle"
    find_one(page, "nav", id="sections")


def test_the_invoices_page_says_when_invoices_appear(web):
    page = web.get("/dashboard/invoices/").content
    find_one(page, data_testid="invoice-cycle-note")
    assert b"runs every 5 minutes" in page


@pytest.mark.parametrize("path", ["/dashboard/customers/cus_nobody", "/dashboard/traces/nope"])
def test_unknown_customers_and_traces_are_404_inside_the_dashboard(tenant, path):
    viewer = web_as(tenant.add_member(Role.VIEWER))
    response = viewer.get(path)
    assert response.status_code == 404
    find_one(response.content, "nav", id="sections")  # the dashboard's chrome
    find_one(response.content, data_testid="error-page")
