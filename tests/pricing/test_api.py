"""Model prices and negotiated rates through the API: shapes, scopes, validation, isolation."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from apps.pricing.costing import TokenUsage, quote_cost
from apps.pricing.selectors import price_in_force
from apps.pricing.services import catalog_sync
from tests.factories import make_key
from tests.pricing.conftest import find_model

pytestmark = pytest.mark.django_db

RATES = {
    "provider": "openai",
    "model": "gpt-4o",
    "inputCostPerMillion": "1.5",
    "outputCostPerMillion": 6,
}


class TestCatalog:
    def test_prices_in_force_filtered_by_provider_and_model(
        self, tenant, django_assert_max_num_queries
    ):
        client = tenant.api()
        client.get("/api/model-prices", {"model": "o1"})  # warm: key and catalog caches
        with django_assert_max_num_queries(2):  # the page, plus at most one for the key
            response = client.get(
                "/api/model-prices", {"provider": "openai", "model": "gpt-4o-2024-08-06"}
            )
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["hasMore"] is False
        [item] = body["items"]
        assert (item["provider"], item["model"]) == ("openai", "gpt-4o")
        assert item["inputCostPerMillion"] == "2.5"
        assert item["outputCostPerMillion"] == "10"
        assert item["cacheReadCostPerMillion"] == "1.25"
        assert item["effectiveTo"] is None
        assert item["prices"]["prices"]["input_mtok"] == "2.5"

        page = client.get("/api/model-prices", {"provider": "anthropic", "limit": 5}).json()
        assert len(page["items"]) == 5 and page["hasMore"] is True
        assert all(i["provider"] == "anthropic" for i in page["items"])
        nxt = client.get(
            "/api/model-prices", {"provider": "anthropic", "limit": 5, "cursor": page["nextCursor"]}
        ).json()
        assert not {i["id"] for i in nxt["items"]} & {i["id"] for i in page["items"]}

    def test_unknown_model_lists_nothing(self, tenant):
        body = tenant.api().get("/api/model-prices", {"model": "no-such-model-xyz"}).json()
        assert body == {"items": [], "nextCursor": None, "hasMore": False}

    def test_history_lists_every_version_of_one_model(self, tenant, feed_file):
        def change(providers):
            find_model(providers, "openai", "gpt-4o")["prices"]["output_mtok"] = "12"

        catalog_sync(source=str(feed_file(change)), now=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
        client = tenant.api()
        current = client.get("/api/model-prices", {"model": "gpt-4o"}).json()["items"]
        assert [i["outputCostPerMillion"] for i in current] == ["12"]
        history = client.get("/api/model-prices", {"model": "gpt-4o", "history": "1"}).json()[
            "items"
        ]
        assert [(i["outputCostPerMillion"], i["effectiveTo"]) for i in history] == [
            ("12", None),
            ("10", "2026-11-01T00:00:00Z"),
        ]
        response = client.get("/api/model-prices", {"history": "1"})
        assert response.status_code == 400
        assert response.json()["error"]["fields"] == {"model": ["Required with history=1."]}

    def test_needs_models_read(self, tenant):
        key = make_key(tenant.test, "obs", scopes=["usage.read"]).plaintext
        response = tenant.api(key).get("/api/model-prices")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "scope_denied"
        ok = make_key(tenant.test, "obs", scopes=["models.read"]).plaintext
        assert tenant.api(ok).get("/api/model-prices", {"limit": 1}).status_code == 200

    def test_price_in_force_selector(self):
        at = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
        shown = price_in_force(None, "gemini-2.5-pro", at)
        assert shown is not None
        assert (shown["provider"], shown["model"]) == ("google", "gemini-2.5-pro")
        assert shown["inputCostPerMillion"] == Decimal("1.25")
        assert shown["hasTiers"] is True
        assert shown["components"]["inputMtok"]["tiers"] == [
            {"aboveInputTokens": 200_000, "price": Decimal("2.5")}
        ]
        o3_before = price_in_force("openai", "o3", dt.datetime(2025, 6, 1, tzinfo=dt.UTC))
        assert o3_before["inputCostPerMillion"] == Decimal("10")
        assert price_in_force("openai", "o3", at)["inputCostPerMillion"] == Decimal("2")
        assert price_in_force(None, "no-such-model-xyz", at) is None


class TestOverrides:
    def test_create_read_update_delete(self, tenant):
        client = tenant.api()
        created = client.post("/api/model-price-overrides", RATES, format="json")
        assert created.status_code == 201, created.content
        body = created.json()
        assert body["kind"] == "rates"
        assert body["inputCostPerMillion"] == "1.5" and body["outputCostPerMillion"] == "6"
        assert body["discountPercent"] is None
        url = f"/api/model-price-overrides/{body['id']}"

        assert client.get(url).json() == body
        listed = client.get("/api/model-price-overrides").json()
        assert [i["id"] for i in listed["items"]] == [body["id"]]

        usage = TokenUsage(input_tokens=1_000_000, output_tokens=1_000_000)
        q = quote_cost(
            environment_id=tenant.test.pk,
            model="gpt-4o",
            provider=None,
            usage=usage,
            at=dt.datetime.now(dt.UTC),
        )
        assert (q.source, q.cost_usd) == ("override_rate", Decimal("7.5"))

        patched = client.patch(
            url,
            {"inputCostPerMillion": None, "outputCostPerMillion": None, "discountPercent": "12.5"},
            format="json",
        )
        assert patched.status_code == 200, patched.content
        assert patched.json()["kind"] == "discount"
        assert patched.json()["discountPercent"] == "12.5"
        q = quote_cost(
            environment_id=tenant.test.pk,
            model="gpt-4o",
            provider=None,
            usage=usage,
            at=dt.datetime.now(dt.UTC),
        )
        assert (q.source, q.cost_usd) == ("override_discount", Decimal("10.9375"))  # 12.5 * 0.875

        assert client.delete(url).status_code == 204
        assert client.get(url).status_code == 404

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({**RATES, "inputCostPerMillion": "-1"}, "inputCostPerMillion"),
            ({"model": "gpt-4o", "discountPercent": 150}, "discountPercent"),
            ({"model": "gpt-4o", "discountPercent": "-0.5"}, "discountPercent"),
            ({"model": "gpt-4o"}, "_body"),
            ({**RATES, "discountPercent": 10}, "_body"),
            ({"model": "gpt-4o", "inputCostPerMillion": "1"}, "outputCostPerMillion"),
            ({"provider": "openai", "inputCostPerMillion": 1, "outputCostPerMillion": 1}, "model"),
            ({"discountPercent": 10}, "provider"),
            ({**RATES, "inputCostPerMillion": "abc"}, "inputCostPerMillion"),
        ],
    )
    def test_bad_input_is_400_with_field_errors(self, tenant, body, field):
        response = tenant.api().post("/api/model-price-overrides", body, format="json")
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert error["code"] == "validation_failed"
        assert field in error["fields"]

    def test_duplicate_is_409(self, tenant):
        client = tenant.api()
        assert client.post("/api/model-price-overrides", RATES, format="json").status_code == 201
        again = client.post(
            "/api/model-price-overrides", {**RATES, "model": "GPT-4o"}, format="json"
        )
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "override_exists"

    def test_scopes(self, tenant):
        reader = make_key(tenant.test, "obs", scopes=["models.read"]).plaintext
        response = tenant.api(reader).post("/api/model-price-overrides", RATES, format="json")
        assert response.status_code == 403 and response.json()["error"]["code"] == "scope_denied"
        assert tenant.api(reader).get("/api/model-price-overrides").status_code == 200
        writer = make_key(tenant.test, "obs", scopes=["usage.write"]).plaintext
        assert (
            tenant.api(writer).post("/api/model-price-overrides", RATES, format="json").status_code
            == 201
        )
        assert tenant.api(writer).get("/api/model-price-overrides").status_code == 403

    def test_outsider_and_other_environment_cannot_see_or_edit(self, tenant, outsider):
        created = tenant.api().post("/api/model-price-overrides", RATES, format="json").json()
        url = f"/api/model-price-overrides/{created['id']}"
        for client in (outsider.api(), tenant.api(tenant.sk_live)):
            assert client.get(url).status_code == 404
            assert client.patch(url, {"note": "mine now"}, format="json").status_code == 404
            assert client.delete(url).status_code == 404
            assert client.get("/api/model-price-overrides").json()["items"] == []
        assert tenant.api().get(url).json()["note"] == ""
        assert tenant.api().get(f"/api/model-price-overrides/{uuid.uuid4()}").status_code == 404
        assert tenant.api().get("/api/model-price-overrides/not-a-uuid").status_code == 404
        # and the other environment's costs are untouched
        q = quote_cost(
            environment_id=tenant.live.pk,
            model="gpt-4o",
            provider=None,
            usage=TokenUsage(input_tokens=10),
            at=dt.datetime.now(dt.UTC),
        )
        assert q.source == "catalog"
