"""Subscriptions through the client API (the reference API's paths): subscribe, read,
change plan, cancel and revert; validation envelopes, scopes, customer keys, isolation."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.customers.models import Customer
from apps.subscriptions.models import Subscription
from tests.factories import make_customer, make_key
from tests.plans.helpers import make_plan

pytestmark = pytest.mark.django_db

URL = "/api/v1/client/subscriptions"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["requestId"]
    return error


@pytest.fixture
def catalog(tenant):
    make_customer(tenant.test, "acme-corp")
    return {
        "basic": make_plan(tenant.test, "basic", price=9),
        "pro": make_plan(tenant.test, "pro", price=49),
        "max": make_plan(tenant.test, "max", price=99),
    }


def subscribe(api, plan: str = "pro", customer: str = "acme-corp", **extra) -> dict:
    response = api.post(
        URL, {"customerReferenceId": customer, "planId": plan, **extra}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


class TestSubscribe:
    def test_creates_an_active_subscription(self, tenant, catalog):
        body = subscribe(tenant.api(), metadata={"source": "checkout"})
        assert (body["status"], body["isActive"], body["planKey"]) == ("active", True, "pro")
        assert body["customerReferenceId"] == "acme-corp"
        assert body["planId"] == str(catalog["pro"].pk)
        assert body["currentPeriodStart"].endswith("T00:00:00Z")
        assert body["intervalMonths"] == 1
        assert body["billingAnchorDay"] == int(body["currentPeriodStart"][8:10])
        assert (body["cancelAtPeriodEnd"], body["cancelMode"], body["scheduledChange"]) == (
            False,
            None,
            None,
        )
        assert body["gracePeriodDays"] == 3
        assert body["metadata"] == {"source": "checkout"}

    def test_plan_by_id_or_key_and_a_trial(self, tenant, catalog):
        api = tenant.api()
        make_customer(tenant.test, "other")
        body = subscribe(api, str(catalog["basic"].pk), trialDays=14, gracePeriod=5)
        assert (body["status"], body["isActive"], body["planKey"]) == ("trialing", True, "basic")
        assert body["trialEndsAt"] == body["currentPeriodEnd"]
        response = api.post(URL, {"customerReferenceId": "other", "planKey": "max"}, format="json")
        assert response.status_code == 201, response.content
        assert response.json()["planKey"] == "max"

    def test_second_live_subscription_is_409(self, tenant, catalog):
        api = tenant.api()
        first = subscribe(api)
        error = assert_error(
            api.post(URL, {"customerReferenceId": "acme-corp", "planId": "max"}, format="json"),
            409,
            "subscription_exists",
        )
        assert error["subscriptionId"] == first["id"]

    def test_unknown_customer_or_plan_is_404_and_a_draft_plan_409(self, tenant, catalog):
        api = tenant.api()
        make_plan(tenant.test, "draft", active=False)
        body = {"customerReferenceId": "nobody", "planId": "pro"}
        assert_error(api.post(URL, body, format="json"), 404, "not_found")
        body = {"customerReferenceId": "acme-corp", "planId": "nothing"}
        assert_error(api.post(URL, body, format="json"), 404, "not_found")
        body = {"customerReferenceId": "acme-corp", "planId": "draft"}
        assert_error(api.post(URL, body, format="json"), 409, "plan_not_active")
        assert not Subscription.objects.exists()

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"planId": "pro"}, "customerReferenceId"),
            ({"customerReferenceId": "acme-corp"}, "planId"),
            ({"customerReferenceId": "acme-corp", "planId": "pro", "planKey": "max"}, "planId"),
            ({"customerReferenceId": 7, "planId": "pro"}, "customerReferenceId"),
            ({"customerReferenceId": "acme-corp", "planId": "pro", "trialDays": -1}, "trialDays"),
            ({"customerReferenceId": "acme-corp", "planId": "pro", "trialDays": "5"}, "trialDays"),
            ({"customerReferenceId": "acme-corp", "planId": "pro", "trialDays": 1.5}, "trialDays"),
            (
                {"customerReferenceId": "acme-corp", "planId": "pro", "gracePeriod": 999},
                "gracePeriod",
            ),
            ({"customerReferenceId": "acme-corp", "planId": "pro", "metadata": []}, "metadata"),
        ],
    )
    def test_bad_bodies_are_400_envelopes(self, tenant, catalog, body, field):
        error = assert_error(tenant.api().post(URL, body, format="json"), 400, "validation_failed")
        assert field in error["fields"], error
        assert not Subscription.objects.exists()


class TestReadChangeCancel:
    def test_list_detail_and_by_customer(self, tenant, catalog):
        api = tenant.api()
        make_customer(tenant.test, "beta")
        first = subscribe(api)
        second = subscribe(api, "basic", customer="beta")
        assert [s["id"] for s in api.get(URL).json()["items"]] == [second["id"], first["id"]]
        only = api.get(URL, {"customerReferenceId": "beta"}).json()["items"]
        assert [s["id"] for s in only] == [second["id"]]
        assert api.get(URL, {"customerReferenceId": "ghost"}).json()["items"] == []
        assert [s["id"] for s in api.get(URL, {"planId": "pro"}).json()["items"]] == [first["id"]]
        assert api.get(URL, {"status": "cancelled"}).json()["items"] == []
        assert len(api.get(URL, {"status": "live"}).json()["items"]) == 2
        assert_error(api.get(URL, {"status": "paused"}), 400, "validation_failed")
        by_customer = api.get("/api/v1/client/customers/acme-corp/subscriptions").json()
        assert [s["id"] for s in by_customer["items"]] == [first["id"]]
        assert_error(api.get("/api/v1/client/customers/ghost/subscriptions"), 404, "not_found")
        assert api.get(f"{URL}/{first['id']}").json()["planKey"] == "pro"
        assert_error(api.get(f"{URL}/not-a-uuid"), 404, "not_found")

    def test_upgrade_now_downgrade_later_and_cancel_the_scheduled_change(self, tenant, catalog):
        api = tenant.api()
        sub = subscribe(api)
        change_url = f"{URL}/{sub['id']}/plan-change"

        response = api.post(change_url, {"changeToPlanId": "max"}, format="json")
        assert response.status_code == 200, response.content
        assert (response.json()["planKey"], response.json()["scheduledChange"]) == ("max", None)

        body = api.post(change_url, {"planKey": "basic"}, format="json").json()
        assert body["planKey"] == "max"
        scheduled = body["scheduledChange"]
        assert (scheduled["changeType"], scheduled["status"], scheduled["toPlanKey"]) == (
            "DOWNGRADE",
            "PENDING",
            "basic",
        )
        assert scheduled["effectiveAt"] == body["currentPeriodEnd"]
        assert_error(
            api.post(change_url, {"planKey": "pro", "changeType": "UPGRADE"}, format="json"),
            409,
            "change_pending",
        )
        response = api.delete(f"{change_url}/scheduled")
        assert (response.status_code, response.json()["scheduledChange"]) == (200, None)
        assert_error(api.delete(f"{change_url}/scheduled"), 409, "no_scheduled_change")

        # The reference's explicit changeType, and our explicit timing.
        body = api.post(
            change_url, {"changeToPlanId": "pro", "changeType": "DOWNGRADE"}, format="json"
        ).json()
        assert body["scheduledChange"]["toPlanKey"] == "pro"
        api.delete(f"{change_url}/scheduled")
        body = api.post(change_url, {"planId": "basic", "timing": "now"}, format="json").json()
        assert (body["planKey"], body["scheduledChange"]) == ("basic", None)

        history = api.get(f"{URL}/{sub['id']}/changes").json()["items"]
        assert [(c["toPlanKey"], c["status"]) for c in history] == [
            ("basic", "COMPLETED"),
            ("pro", "CANCELLED"),
            ("basic", "CANCELLED"),
            ("max", "COMPLETED"),
        ]
        assert_error(
            api.post(change_url, {"planId": "max", "timing": "later"}, format="json"),
            400,
            "validation_failed",
        )
        assert_error(api.post(change_url, {}, format="json"), 400, "validation_failed")
        assert_error(api.post(change_url, {"planId": "basic"}, format="json"), 409, "same_plan")

    def test_cancel_at_period_end_revert_and_cancel_now(self, tenant, catalog):
        api = tenant.api()
        sub = subscribe(api)
        cancel_url = f"{URL}/cancellation/{sub['id']}"

        body = api.post(cancel_url).json()  # END_OF_PERIOD by default
        assert (body["status"], body["cancelAtPeriodEnd"], body["cancelMode"]) == (
            "active",
            True,
            "END_OF_PERIOD",
        )
        assert body["cancelEffectiveAt"] == body["currentPeriodEnd"]
        body = api.delete(f"{cancel_url}/scheduled").json()
        assert (body["cancelAtPeriodEnd"], body["cancelEffectiveAt"]) == (False, None)
        assert_error(api.delete(f"{cancel_url}/scheduled"), 409, "no_scheduled_cancellation")

        body = api.post(f"{cancel_url}?cancelMode=IMMEDIATE").json()
        assert (body["status"], body["isActive"], body["cancelMode"]) == (
            "cancelled",
            False,
            "IMMEDIATE",
        )
        assert body["endedAt"]
        assert_error(api.post(cancel_url), 409, "subscription_cancelled")
        assert_error(
            api.post(cancel_url, {"cancelMode": "SOMETIME"}, format="json"),
            400,
            "validation_failed",
        )
        # The customer may subscribe again.
        assert subscribe(api, "basic")["status"] == "active"

    def test_list_query_count_does_not_grow(self, tenant, catalog):
        api = tenant.api()
        subscribe(api)
        api.get(URL)
        with CaptureQueriesContext(connection) as few:
            api.get(URL)
        for index in range(5):
            make_customer(tenant.test, f"c{index}")
            sub = subscribe(api, "max", customer=f"c{index}")
            api.post(f"{URL}/{sub['id']}/plan-change", {"planId": "basic"}, format="json")
        with CaptureQueriesContext(connection) as many:
            items = api.get(URL).json()["items"]
        assert len(items) == 6
        assert sum(1 for s in items if s["scheduledChange"]) == 5
        assert len(many.captured_queries) == len(few.captured_queries)


class TestScopesAndKeys:
    def test_scopes(self, tenant, catalog):
        sub = subscribe(tenant.api())
        reader = tenant.api(make_key(tenant.test, "obs", scopes=["customers.read"]).plaintext)
        assert reader.get(URL).status_code == 200
        assert reader.get(f"{URL}/{sub['id']}").status_code == 200
        error = assert_error(
            reader.post(URL, {"customerReferenceId": "acme-corp", "planId": "pro"}, format="json"),
            403,
            "scope_denied",
        )
        assert error["requiredScope"] == "customers.write"
        assert_error(reader.post(f"{URL}/cancellation/{sub['id']}"), 403, "scope_denied")
        assert_error(
            reader.post(f"{URL}/{sub['id']}/plan-change", {"planId": "max"}, format="json"),
            403,
            "scope_denied",
        )
        nobody = tenant.api(make_key(tenant.test, "obs", scopes=["usage.read"]).plaintext)
        assert_error(nobody.get(URL), 403, "scope_denied")
        assert Subscription.objects.get().status == "active"

    def test_a_customer_key_reads_only_its_own(self, tenant, catalog):
        api = tenant.api()
        mine = subscribe(api)
        make_customer(tenant.test, "beta")
        theirs = subscribe(api, "basic", customer="beta")
        acme = Customer.objects.get(environment=tenant.test, reference_id="acme-corp")
        ck = tenant.api(make_key(tenant.test, "ck", customer=acme, scopes=["read"]).plaintext)
        assert [s["id"] for s in ck.get(URL).json()["items"]] == [mine["id"]]
        assert ck.get(f"{URL}/{mine['id']}").status_code == 200
        assert_error(ck.get(f"{URL}/{theirs['id']}"), 404, "not_found")
        assert_error(ck.get(URL, {"customerReferenceId": "beta"}), 403, "customer_mismatch")
        assert_error(
            ck.get("/api/v1/client/customers/beta/subscriptions"), 403, "customer_mismatch"
        )
        assert ck.get("/api/v1/client/customers/acme-corp/subscriptions").status_code == 200
        assert_error(ck.post(f"{URL}/cancellation/{mine['id']}"), 403, "forbidden")
        assert_error(
            ck.post(URL, {"customerReferenceId": "acme-corp", "planId": "max"}, format="json"),
            403,
            "forbidden",
        )


class TestIsolation:
    def test_other_organization_and_other_environment_see_nothing(self, tenant, outsider, catalog):
        sub = subscribe(tenant.api())
        make_customer(outsider.test, "acme-corp")
        make_customer(tenant.live, "acme-corp")
        for api in (outsider.api(), tenant.api(tenant.sk_live)):
            assert api.get(URL).json()["items"] == []
            assert api.get(URL, {"customerReferenceId": "acme-corp"}).json()["items"] == []
            assert api.get("/api/v1/client/customers/acme-corp/subscriptions").json()["items"] == []
            assert_error(api.get(f"{URL}/{sub['id']}"), 404, "not_found")
            assert_error(api.get(f"{URL}/{sub['id']}/changes"), 404, "not_found")
            assert_error(api.post(f"{URL}/cancellation/{sub['id']}"), 404, "not_found")
            assert_error(api.delete(f"{URL}/cancellation/{sub['id']}/scheduled"), 404, "not_found")
            assert_error(
                api.post(f"{URL}/{sub['id']}/plan-change", {"planId": "max"}, format="json"),
                404,
                "not_found",
            )
            # Their own customer cannot be put on our plan, by key or by id.
            for plan in ("pro", str(catalog["pro"].pk)):
                body = {"customerReferenceId": "acme-corp", "planId": plan}
                assert_error(api.post(URL, body, format="json"), 404, "not_found")
        assert Subscription.objects.get().status == "active"
        assert Subscription.objects.count() == 1
