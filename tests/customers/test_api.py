"""Customers through the client API: create, read, update, list; keys, scopes, isolation."""

from __future__ import annotations

import pytest

from apps.customers.models import Customer
from apps.customers.services import customers_ensure
from tests.factories import make_customer, make_key

pytestmark = pytest.mark.django_db

URL = "/api/v1/client/customers"

# The quickstart's body (reference/public-pages/002), as written. The page's email reads
# "[email protected]" only because the scraper saw Cloudflare's e-mail obfuscation;
# the snippet itself carries an ordinary address.
QUICKSTART_BODY = {
    "customerReferenceId": "cus_123",
    "email": "jane@example.com",
    "firstName": "Jane",
    "lastName": "Smith",
}


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["requestId"]
    return error


class TestCreate:
    def test_quickstart_snippet_creates_the_customer(self, tenant):
        assert tenant.sk_test.startswith("sk_test_")
        response = tenant.api().post(URL, QUICKSTART_BODY, format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["customerReferenceId"] == "cus_123"
        assert (body["email"], body["firstName"], body["lastName"]) == (
            "jane@example.com",
            "Jane",
            "Smith",
        )
        assert body["phoneNumber"] == ""
        assert body["metadata"] == {}
        assert body["stripeCustomerId"] == ""
        assert body["source"] == "manual"
        assert body["createdAt"].endswith("Z")
        assert body["modifiedAt"].endswith("Z")
        assert Customer.objects.get(environment=tenant.test, reference_id="cus_123")

    def test_all_fields(self, tenant):
        response = tenant.api().post(
            URL,
            {
                "customerReferenceId": "org-7/user 42",
                "email": "ops@acme.io",
                "phone": "+33 1 23 45 67 89",
                "metadata": {"tier": "gold", "seats": 12, "ratio": 0.05},
                "stripeCustomerId": "cus_Stripe1",
            },
            format="json",
        )
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["phoneNumber"] == "+33 1 23 45 67 89"
        assert body["metadata"] == {"tier": "gold", "seats": 12, "ratio": 0.05}
        assert body["stripeCustomerId"] == "cus_Stripe1"

    def test_duplicate_is_409_in_the_envelope(self, tenant):
        api = tenant.api()
        assert api.post(URL, QUICKSTART_BODY, format="json").status_code == 201
        error = assert_error(api.post(URL, QUICKSTART_BODY, format="json"), 409, "customer_exists")
        assert "customerReferenceId" in error["fields"]
        assert Customer.objects.filter(reference_id="cus_123").count() == 1

    def test_a_customer_first_seen_in_an_event_can_be_registered_later(self, tenant):
        customers_ensure(environment=tenant.test, reference_ids=["cus_123"])
        response = tenant.api().post(URL, QUICKSTART_BODY, format="json")
        assert response.status_code == 201, response.content
        assert response.json()["source"] == "manual"
        assert response.json()["firstName"] == "Jane"
        assert Customer.objects.filter(reference_id="cus_123").count() == 1

    def test_the_same_reference_in_live_is_another_customer(self, tenant):
        assert tenant.api().post(URL, QUICKSTART_BODY, format="json").status_code == 201
        live = tenant.api(tenant.sk_live).post(URL, QUICKSTART_BODY, format="json")
        assert live.status_code == 201

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"email": "a@b.co"}, "customerReferenceId"),
            ({"customerReferenceId": ""}, "customerReferenceId"),
            ({"customerReferenceId": "x" * 256}, "customerReferenceId"),
            ({"customerReferenceId": 123}, "customerReferenceId"),
            ({"customerReferenceId": None}, "customerReferenceId"),
            ({"customerReferenceId": "c1", "email": "not an email"}, "email"),
            ({"customerReferenceId": "c1", "email": 5}, "email"),
            ({"customerReferenceId": "c1", "firstName": {"a": 1}}, "firstName"),
            ({"customerReferenceId": "c1", "lastName": 7}, "lastName"),
            ({"customerReferenceId": "c1", "metadata": "tier=gold"}, "metadata"),
            ({"customerReferenceId": "c1", "metadata": [1, 2]}, "metadata"),
            ({"customerReferenceId": "c1", "metadata": {"x": "y" * 20_000}}, "metadata"),
            ({"customerReferenceId": "c1", "phoneNumber": "1" * 41}, "phoneNumber"),
            ({"customerReferenceId": "c1", "phone": "1", "phoneNumber": "2"}, "phone"),
            ({"customerReferenceId": "a\x00b"}, "customerReferenceId"),
        ],
    )
    def test_bad_bodies_are_400_with_field_errors(self, tenant, body, field):
        error = assert_error(tenant.api().post(URL, body, format="json"), 400, "validation_failed")
        assert field in error["fields"], error
        assert not Customer.objects.exists()

    def test_malformed_json_is_400(self, tenant):
        response = tenant.api().post(URL, "{nope", content_type="application/json")
        assert_error(response, 400, "malformed_body")

    def test_null_optional_fields_mean_empty(self, tenant):
        response = tenant.api().post(
            URL,
            {"customerReferenceId": "c1", "email": None, "firstName": None, "metadata": None},
            format="json",
        )
        assert response.status_code == 201, response.content
        assert (response.json()["email"], response.json()["metadata"]) == ("", {})


class TestRead:
    def test_get_by_reference(self, tenant):
        make_customer(tenant.test, "cus_1", email="a@x.io", first_name="Ann")
        response = tenant.api().get(f"{URL}/cus_1")
        assert response.status_code == 200
        assert response.json()["customerReferenceId"] == "cus_1"
        assert response.json()["firstName"] == "Ann"

    def test_reference_with_odd_characters_round_trips(self, tenant):
        make_customer(tenant.test, "user@acme.io+é:1")
        response = tenant.api().get(f"{URL}/user%40acme.io%2B%C3%A9%3A1")
        assert response.status_code == 200, response.content
        assert response.json()["customerReferenceId"] == "user@acme.io+é:1"

    def test_unknown_too_long_or_nul_references_are_404_not_500(self, tenant):
        api = tenant.api()
        assert_error(api.get(f"{URL}/nobody"), 404, "not_found")
        assert_error(api.get(f"{URL}/{'x' * 300}"), 404, "not_found")
        # A NUL in the path is refused before any view (core.request_limits).
        assert_error(api.get(f"{URL}/a%00b"), 400, "validation_failed")
        assert_error(api.patch(f"{URL}/{'x' * 300}", {}, format="json"), 404, "not_found")

    def test_a_reference_with_a_slash_is_found_through_the_list_filter(self, tenant):
        make_customer(tenant.test, "org/7")
        assert tenant.api().get(f"{URL}/org%2F7").status_code == 404  # documented limit
        response = tenant.api().get(URL, {"customerReferenceId": "org/7"})
        assert [c["customerReferenceId"] for c in response.json()["items"]] == ["org/7"]

    def test_other_environment_and_outsider_get_404(self, tenant, outsider):
        make_customer(tenant.test, "cus_1")
        assert_error(tenant.api(tenant.sk_live).get(f"{URL}/cus_1"), 404, "not_found")
        assert_error(outsider.api().get(f"{URL}/cus_1"), 404, "not_found")
        assert_error(
            outsider.api().patch(f"{URL}/cus_1", {"firstName": "X"}, format="json"),
            404,
            "not_found",
        )
        assert Customer.objects.get(reference_id="cus_1").first_name == ""


class TestUpdate:
    def test_patch_changes_only_given_fields(self, tenant):
        make_customer(tenant.test, "cus_1", email="a@x.io", first_name="Ann", last_name="Lee")
        response = tenant.api().patch(
            f"{URL}/cus_1",
            {"firstName": "Anne", "phoneNumber": "555", "metadata": {"k": "v"}},
            format="json",
        )
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["firstName"], body["lastName"], body["email"]) == ("Anne", "Lee", "a@x.io")
        assert (body["phoneNumber"], body["metadata"]) == ("555", {"k": "v"})
        assert body["modifiedAt"] > body["createdAt"]
        row = Customer.objects.get(reference_id="cus_1")
        assert (row.first_name, row.phone) == ("Anne", "555")

    def test_patch_can_clear_a_field_with_null(self, tenant):
        make_customer(tenant.test, "cus_1", email="a@x.io")
        response = tenant.api().patch(f"{URL}/cus_1", {"email": None}, format="json")
        assert response.status_code == 200
        assert response.json()["email"] == ""

    def test_patch_refuses_a_bad_email_and_a_new_reference(self, tenant):
        make_customer(tenant.test, "cus_1", email="a@x.io")
        api = tenant.api()
        error = assert_error(
            api.patch(f"{URL}/cus_1", {"email": "bad"}, format="json"), 400, "validation_failed"
        )
        assert "email" in error["fields"]
        error = assert_error(
            api.patch(f"{URL}/cus_1", {"customerReferenceId": "cus_2"}, format="json"),
            400,
            "validation_failed",
        )
        assert "customerReferenceId" in error["fields"]
        assert Customer.objects.get(reference_id="cus_1").email == "a@x.io"
        same = api.patch(f"{URL}/cus_1", {"customerReferenceId": "cus_1"}, format="json")
        assert same.status_code == 200


class TestList:
    def test_lists_newest_first_with_cursor_pages(self, tenant, outsider):
        api = tenant.api()
        for n in range(5):
            api.post(URL, {"customerReferenceId": f"cus_{n}"}, format="json")
        make_customer(tenant.live, "live_only")
        make_customer(outsider.test, "theirs")

        first = api.get(URL, {"limit": 2}).json()
        assert [c["customerReferenceId"] for c in first["items"]] == ["cus_4", "cus_3"]
        assert first["hasMore"] is True
        second = api.get(URL, {"limit": 2, "cursor": first["nextCursor"]}).json()
        assert [c["customerReferenceId"] for c in second["items"]] == ["cus_2", "cus_1"]
        third = api.get(URL, {"limit": 2, "cursor": second["nextCursor"]}).json()
        assert [c["customerReferenceId"] for c in third["items"]] == ["cus_0"]
        assert third == {**third, "hasMore": False, "nextCursor": None}

    def test_other_environment_and_outsider_see_nothing(self, tenant, outsider):
        make_customer(tenant.test, "cus_1")
        assert outsider.api().get(URL).json()["items"] == []
        assert tenant.api(tenant.sk_live).get(URL).json()["items"] == []
        assert outsider.api().get(URL, {"search": "cus"}).json()["items"] == []

    def test_search_matches_reference_email_and_names(self, tenant):
        make_customer(
            tenant.test, "cus_a", email="jane@acme.io", first_name="Jane", last_name="Smith"
        )
        make_customer(tenant.test, "cus_b", email="bob@other.org", first_name="Bob", last_name="Ng")
        make_customer(tenant.test, "ACME-42", email="x@y.z")
        api = tenant.api()

        def refs(search: str) -> set[str]:
            response = api.get(URL, {"search": search})
            assert response.status_code == 200, response.content
            return {c["customerReferenceId"] for c in response.json()["items"]}

        assert refs("acme") == {"cus_a", "ACME-42"}  # email and reference, any case
        assert refs("SMITH") == {"cus_a"}
        assert refs("jane smith") == {"cus_a"}  # every word, across columns
        assert refs("bob ng") == {"cus_b"}
        assert refs("cus_") == {"cus_a", "cus_b"}
        assert refs("nobody") == set()
        assert refs("") == {"cus_a", "cus_b", "ACME-42"}
        assert refs("100%") == set()  # LIKE wildcards are literal

    def test_filter_by_source(self, tenant):
        make_customer(tenant.test, "manual_1")
        customers_ensure(environment=tenant.test, reference_ids=["auto_1"])
        items = tenant.api().get(URL, {"source": "event"}).json()["items"]
        assert [c["customerReferenceId"] for c in items] == ["auto_1"]
        assert_error(tenant.api().get(URL, {"source": "nope"}), 400, "validation_failed")

    def test_bad_limit_and_cursor_are_400(self, tenant):
        api = tenant.api()
        assert_error(api.get(URL, {"limit": "0"}), 400, "validation_failed")
        assert_error(api.get(URL, {"limit": "abc"}), 400, "validation_failed")
        assert_error(api.get(URL, {"cursor": "%%%"}), 400, "validation_failed")
        assert_error(api.get(URL, {"search": "x" * 300}), 400, "validation_failed")

    def test_query_count_does_not_grow_with_the_page(self, tenant, django_assert_max_num_queries):
        api = tenant.api()
        api.get(URL)  # warm the key cache
        for n in range(3):
            make_customer(tenant.test, f"few_{n}")
        with django_assert_max_num_queries(3) as few:
            assert len(api.get(URL).json()["items"]) == 3
        for n in range(40):
            make_customer(tenant.test, f"many_{n}")
        with django_assert_max_num_queries(3) as many:
            assert len(api.get(URL, {"search": "many"}).json()["items"]) == 40
        assert len(many.captured_queries) == len(few.captured_queries)


class TestKeysAndScopes:
    def test_customer_key_reads_its_own_customer_only(self, tenant):
        mine = make_customer(tenant.test, "cus_mine")
        make_customer(tenant.test, "cus_other")
        ck = make_key(tenant.test, "ck", customer=mine).plaintext
        assert ck.startswith("ck_test_")
        api = tenant.api(ck)

        response = api.get(f"{URL}/cus_mine")
        assert response.status_code == 200
        assert response.json()["customerReferenceId"] == "cus_mine"
        assert_error(api.get(f"{URL}/cus_other"), 403, "customer_mismatch")
        assert_error(api.get(f"{URL}/nobody"), 403, "customer_mismatch")

    def test_customer_key_cannot_create_update_or_list(self, tenant):
        mine = make_customer(tenant.test, "cus_mine")
        api = tenant.api(make_key(tenant.test, "ck", customer=mine).plaintext)
        assert_error(api.post(URL, {"customerReferenceId": "new"}, format="json"), 403, "forbidden")
        assert_error(
            api.patch(f"{URL}/cus_mine", {"firstName": "Hacked"}, format="json"), 403, "forbidden"
        )
        assert_error(api.get(URL), 403, "forbidden")
        assert not Customer.objects.filter(reference_id="new").exists()
        assert Customer.objects.get(pk=mine.pk).first_name == ""

    def test_customer_key_without_read_scope_is_denied(self, tenant):
        mine = make_customer(tenant.test, "cus_mine")
        api = tenant.api(make_key(tenant.test, "ck", customer=mine, scopes=["purchase"]).plaintext)
        assert_error(api.get(f"{URL}/cus_mine"), 403, "scope_denied")

    def test_scoped_keys_need_the_customer_scopes(self, tenant):
        make_customer(tenant.test, "cus_1")
        usage_only = tenant.api(make_key(tenant.test, "obs", scopes=["usage.read"]).plaintext)
        assert_error(usage_only.get(URL), 403, "scope_denied")
        assert_error(usage_only.get(f"{URL}/cus_1"), 403, "scope_denied")
        assert_error(usage_only.post(URL, QUICKSTART_BODY, format="json"), 403, "scope_denied")

        reader = tenant.api(make_key(tenant.test, "obs", scopes=["customers.read"]).plaintext)
        assert reader.get(URL).status_code == 200
        assert reader.get(f"{URL}/cus_1").status_code == 200
        error = assert_error(reader.post(URL, QUICKSTART_BODY, format="json"), 403, "scope_denied")
        assert error["requiredScope"] == "customers.write"
        assert_error(reader.patch(f"{URL}/cus_1", {}, format="json"), 403, "scope_denied")

        writer = tenant.api(
            make_key(tenant.test, "obs", scopes=["customers.read", "customers.write"]).plaintext
        )
        assert writer.post(URL, QUICKSTART_BODY, format="json").status_code == 201

    def test_no_key_is_401(self, tenant):
        from rest_framework.test import APIClient

        assert_error(APIClient().get(URL), 401, "unauthorized")
        assert_error(APIClient().post(URL, QUICKSTART_BODY, format="json"), 401, "unauthorized")
