"""Features through the client API: define, read, update, list; scopes and isolation."""

from __future__ import annotations

import pytest

from apps.features.models import Feature
from apps.features.services import features_ensure
from tests.factories import make_customer, make_key

pytestmark = pytest.mark.django_db

URL = "/api/v1/client/features"
FIELDS = {
    "id",
    "key",
    "name",
    "description",
    "unitLabel",
    "isEnabled",
    "metadata",
    "source",
    "createdAt",
    "modifiedAt",
}


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["requestId"]
    return error


class TestCreate:
    def test_create_renders_the_flat_feature(self, tenant):
        response = tenant.api().post(
            URL,
            {
                "key": "ai_summarization",
                "name": "Summaries",
                "description": "Document summaries",
                "unitLabel": "tokens",
                "metadata": {"team": "docs", "weight": 1.5},
            },
            format="json",
        )
        assert response.status_code == 201, response.content
        body = response.json()
        assert set(body) == FIELDS
        assert body["key"] == "ai_summarization"
        assert (body["unitLabel"], body["isEnabled"], body["source"]) == ("tokens", True, "manual")
        assert body["metadata"] == {"team": "docs", "weight": 1.5}

    def test_hosted_recipe_body_with_a_type_is_accepted(self, tenant):
        response = tenant.api().post(
            URL, {"key": "api_calls", "name": "API calls", "type": "USAGE_BASED"}, format="json"
        )
        assert response.status_code == 201, response.content

    def test_duplicate_key_is_409(self, tenant):
        api = tenant.api()
        assert api.post(URL, {"key": "chat", "name": "Chat"}, format="json").status_code == 201
        error = assert_error(
            api.post(URL, {"key": "chat", "name": "Again"}, format="json"), 409, "feature_exists"
        )
        assert "key" in error["fields"]

    def test_a_feature_first_seen_in_an_event_can_be_defined_later(self, tenant):
        features_ensure(environment=tenant.test, keys=["chat"])
        response = tenant.api().post(URL, {"key": "chat", "name": "Chat"}, format="json")
        assert response.status_code == 201
        assert response.json()["source"] == "manual"

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"name": "No key"}, "key"),
            ({"key": "k"}, "name"),
            ({"key": "", "name": "X"}, "key"),
            ({"key": "k" * 129, "name": "X"}, "key"),
            ({"key": 5, "name": "X"}, "key"),
            ({"key": "k", "name": "X", "isEnabled": "yes"}, "isEnabled"),
            ({"key": "k", "name": "X", "metadata": "m"}, "metadata"),
            ({"key": "k", "name": "X", "unitLabel": "u" * 41}, "unitLabel"),
        ],
    )
    def test_bad_bodies_are_400(self, tenant, body, field):
        error = assert_error(tenant.api().post(URL, body, format="json"), 400, "validation_failed")
        assert field in error["fields"]
        assert not Feature.objects.exists()


class TestReadAndUpdate:
    def test_get_and_patch_by_key(self, tenant):
        api = tenant.api()
        api.post(URL, {"key": "chat", "name": "Chat"}, format="json")
        assert api.get(f"{URL}/chat").json()["name"] == "Chat"

        response = api.patch(
            f"{URL}/chat",
            {"isEnabled": False, "unitLabel": "messages", "description": None},
            format="json",
        )
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["isEnabled"], body["unitLabel"], body["description"]) == (
            False,
            "messages",
            "",
        )
        assert body["name"] == "Chat"
        assert Feature.objects.get(key="chat").is_enabled is False

    def test_patch_refuses_a_blank_name(self, tenant):
        tenant.api().post(URL, {"key": "chat", "name": "Chat"}, format="json")
        assert_error(
            tenant.api().patch(f"{URL}/chat", {"name": ""}, format="json"), 400, "validation_failed"
        )

    def test_unknown_and_impossible_keys_are_404(self, tenant):
        api = tenant.api()
        assert_error(api.get(f"{URL}/nothing"), 404, "not_found")
        assert_error(api.get(f"{URL}/{'k' * 200}"), 404, "not_found")
        assert_error(api.patch(f"{URL}/nothing", {"name": "X"}, format="json"), 404, "not_found")

    def test_other_environment_and_outsider_get_404(self, tenant, outsider):
        tenant.api().post(URL, {"key": "chat", "name": "Chat"}, format="json")
        assert_error(tenant.api(tenant.sk_live).get(f"{URL}/chat"), 404, "not_found")
        assert_error(outsider.api().get(f"{URL}/chat"), 404, "not_found")
        assert_error(
            outsider.api().patch(f"{URL}/chat", {"name": "Mine"}, format="json"), 404, "not_found"
        )
        assert Feature.objects.get(key="chat").name == "Chat"


class TestList:
    def test_pages_search_and_isolation(self, tenant, outsider):
        api = tenant.api()
        for key in ("chat", "search", "summaries"):
            api.post(URL, {"key": key, "name": key.title()}, format="json")
        api.patch(f"{URL}/search", {"isEnabled": False}, format="json")
        features_ensure(environment=outsider.test, keys=["theirs"])
        features_ensure(environment=tenant.live, keys=["live_only"])

        first = api.get(URL, {"limit": 2}).json()
        assert [f["key"] for f in first["items"]] == ["summaries", "search"]
        second = api.get(URL, {"limit": 2, "cursor": first["nextCursor"]}).json()
        assert ([f["key"] for f in second["items"]], second["hasMore"]) == (["chat"], False)

        assert [f["key"] for f in api.get(URL, {"search": "SUM"}).json()["items"]] == ["summaries"]
        disabled = api.get(URL, {"isEnabled": "false"}).json()["items"]
        assert [f["key"] for f in disabled] == ["search"]
        assert_error(api.get(URL, {"isEnabled": "maybe"}), 400, "validation_failed")
        assert [f["key"] for f in outsider.api().get(URL).json()["items"]] == ["theirs"]

    def test_query_count_does_not_grow_with_the_page(self, tenant, django_assert_max_num_queries):
        api = tenant.api()
        api.get(URL)  # warm the key cache
        features_ensure(environment=tenant.test, keys=[f"f{n}" for n in range(3)])
        with django_assert_max_num_queries(3) as few:
            assert len(api.get(URL).json()["items"]) == 3
        features_ensure(environment=tenant.test, keys=[f"g{n}" for n in range(40)])
        with django_assert_max_num_queries(3) as many:
            assert len(api.get(URL).json()["items"]) == 43
        assert len(many.captured_queries) == len(few.captured_queries)


class TestScopes:
    def test_read_needs_usage_read_and_write_needs_usage_write(self, tenant):
        features_ensure(environment=tenant.test, keys=["chat"])
        nothing = tenant.api(make_key(tenant.test, "obs", scopes=["customers.read"]).plaintext)
        assert_error(nothing.get(URL), 403, "scope_denied")
        assert_error(nothing.get(f"{URL}/chat"), 403, "scope_denied")

        reader = tenant.api(make_key(tenant.test, "obs", scopes=["usage.read"]).plaintext)
        assert reader.get(URL).status_code == 200
        assert reader.get(f"{URL}/chat").status_code == 200
        error = assert_error(
            reader.post(URL, {"key": "k", "name": "K"}, format="json"), 403, "scope_denied"
        )
        assert error["requiredScope"] == "usage.write"
        assert_error(reader.patch(f"{URL}/chat", {"name": "X"}, format="json"), 403, "scope_denied")

        writer = tenant.api(make_key(tenant.test, "obs", scopes=["usage.write"]).plaintext)
        assert writer.post(URL, {"key": "k", "name": "K"}, format="json").status_code == 201

    def test_customer_keys_are_refused(self, tenant):
        customer = make_customer(tenant.test, "cus_1")
        ck = tenant.api(make_key(tenant.test, "ck", customer=customer).plaintext)
        assert_error(ck.get(URL), 403, "forbidden")
        assert_error(ck.post(URL, {"key": "k", "name": "K"}, format="json"), 403, "forbidden")
