"""Plans through the API: create with rules, lifecycle, frozen terms, readable pricing,
validation envelopes, scopes and isolation."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.plans.models import Plan, PlanFeatureRule
from apps.plans.services import RuleSpec
from tests.factories import make_key
from tests.plans.helpers import make_feature, make_plan

pytestmark = pytest.mark.django_db

URL = "/api/v1/client/plans"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["requestId"]
    return error


def pro_body(**overrides) -> dict:
    body = {
        "key": "pro",
        "name": "Pro",
        "description": "For teams",
        "priceAmount": "49.99",
        "interval": "monthly",
        "billingTiming": "IN_ADVANCE",
        "features": [
            {"featureKey": "tokens", "model": "per_unit", "pricePerUnit": "0.002"},
            {
                "featureKey": "summaries",
                "model": "graduated",
                "tiers": [
                    {"upTo": 1000, "pricePerUnit": 0},
                    {"upTo": 10000, "pricePerUnit": "0.002", "flatFee": 5},
                    {"upTo": "inf", "pricePerUnit": "0.001"},
                ],
            },
        ],
    }
    body.update(overrides)
    return body


@pytest.fixture
def features(tenant):
    make_feature(tenant.test, "tokens", unit_label="tokens")
    make_feature(tenant.test, "summaries", unit_label="summaries")
    make_feature(tenant.test, "seats", unit_label="seat")


class TestCreate:
    def test_amounts_may_be_json_numbers(self, tenant, features):
        # Numbers arrive as Decimals (the exact JSON parser); they were refused as
        # "Value must be valid JSON." in priceAmount and in the feature rules.
        body = pro_body(priceAmount=49.99)
        body["features"][0]["pricePerUnit"] = 0.002
        response = tenant.api().post(URL, body, format="json")
        assert response.status_code == 201, response.content
        assert response.json()["priceAmount"] == "49.99"
        patched = tenant.api().patch(f"{URL}/pro", {"priceAmount": 59.5}, format="json")
        assert patched.status_code == 200, patched.content
        assert patched.json()["priceAmount"] == "59.5"

    def test_creates_a_draft_with_rendered_rules(self, tenant, features):
        response = tenant.api().post(URL, pro_body(), format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        assert (body["key"], body["status"], body["billingTiming"]) == (
            "pro",
            "DRAFT",
            "IN_ADVANCE",
        )
        assert (body["priceAmount"], body["currency"], body["intervalMonths"]) == (
            "49.99",
            "USD",
            1,
        )
        assert body["interval"] == "monthly"
        assert body["summary"] == "$49.99 per month"
        assert body["creditAllocations"] == []
        by_key = {f["key"]: f for f in body["features"]}
        tokens = by_key["tokens"]
        assert (tokens["pricingType"], tokens["pricing"]["pricePerUnit"]) == (
            "usage_based",
            "0.002",
        )
        assert tokens["summary"] == "$0.002 per token"
        summaries = by_key["summaries"]
        assert summaries["pricingType"] == "graduated"
        assert summaries["pricing"]["tiers"] == [
            {"upTo": "1000", "pricePerUnit": "0", "flatFee": "0"},
            {"upTo": "10000", "pricePerUnit": "0.002", "flatFee": "5"},
            {"upTo": None, "pricePerUnit": "0.001", "flatFee": "0"},
        ]
        assert summaries["summary"] == (
            "First 1,000 summaries free, next 9,000 at $0.002 per summary + $5.00 flat, "
            "then $0.001 per summary"
        )
        assert PlanFeatureRule.objects.filter(plan_id=body["id"]).count() == 2

    @pytest.mark.parametrize(
        ("rule", "summary"),
        [
            ({"model": "included"}, "Included"),
            (
                {"model": "included", "maxUsage": 1000, "overagePricePerUnit": "0.02"},
                "First 1,000 tokens per billing period included, then $0.02 per token",
            ),
            (
                {
                    "model": "per_unit",
                    "pricePerUnit": "0.01",
                    "maxUsage": 50,
                    "resetInterval": "day",
                },
                "$0.01 per token, up to 50 tokens per day",
            ),
            (
                {
                    "model": "usage",  # the reference's name for per-unit
                    "pricePerUnit": "0.01",
                    "maxUsage": 1000,
                    "resetInterval": "month",
                    "overagePricePerUnit": "0.015",
                },
                "$0.01 per token for the first 1,000 tokens per calendar month, "
                "then $0.015 per token",
            ),
            (
                {"model": "package", "pricePerUnit": 5, "packageSize": 1000},
                "$5.00 per 1,000 tokens",
            ),
            (
                {
                    "model": "volume",
                    "tiers": [
                        {"upTo": 100, "pricePerUnit": "0.05"},
                        {"upTo": None, "pricePerUnit": "0.03", "flatFee": 10},
                    ],
                },
                "All units at the price of the tier reached: up to 100 tokens: $0.05 per token; "
                "above 100: $0.03 per token + $10.00 flat",
            ),
        ],
    )
    def test_readable_pricing(self, tenant, features, rule, summary):
        body = pro_body(features=[{"featureKey": "tokens", **rule}])
        response = tenant.api().post(URL, body, format="json")
        assert response.status_code == 201, response.content
        assert response.json()["features"][0]["summary"] == summary

    def test_annual_in_arrears_in_euros(self, tenant, features):
        response = tenant.api().post(
            URL,
            pro_body(
                interval="annual",
                intervalMonths=12,
                billingTiming="in_arrears",
                currency="eur",
                priceAmount=490,
            ),
            format="json",
        )
        assert response.status_code == 201, response.content
        body = response.json()
        assert (body["interval"], body["billingTiming"], body["currency"]) == (
            "annual",
            "IN_ARREARS",
            "EUR",
        )
        assert body["summary"] == "€490.00 per year"

    def test_credit_backing_is_kept(self, tenant, features):
        rule = {
            "featureKey": "tokens",
            "model": "included",
            "creditDenomination": "AI_CREDITS",
            "creditsPerUnit": "1.5",
        }
        body = tenant.api().post(URL, pro_body(features=[rule]), format="json").json()
        pricing = body["features"][0]["pricing"]
        assert (pricing["creditDenomination"], pricing["creditsPerUnit"]) == ("AI_CREDITS", "1.5")

    def test_duplicate_key_is_409(self, tenant, features):
        api = tenant.api()
        assert api.post(URL, pro_body(), format="json").status_code == 201
        assert_error(api.post(URL, pro_body(), format="json"), 409, "plan_exists")

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"key": ""}, "key"),
            ({"name": None}, "name"),
            ({"priceAmount": "-1"}, "priceAmount"),
            ({"priceAmount": "abc"}, "priceAmount"),
            ({"priceAmount": "0.0000000000001"}, "priceAmount"),
            ({"currency": "dollars"}, "currency"),
            ({"currency": "U$D"}, "currency"),
            ({"currency": "XYZ"}, "currency"),  # three letters, but no ISO 4217 currency
            ({"currency": "XAU"}, "currency"),  # gold has no minor unit: not money here
            ({"interval": "weekly"}, "interval"),
            ({"intervalMonths": 3}, "intervalMonths"),
            ({"interval": "annual", "intervalMonths": 1}, "interval"),
            ({"billingTiming": "LATER"}, "billingTiming"),
            ({"features": "tokens"}, "features"),
            ({"features": [{"featureKey": "nope"}]}, "features.0.featureKey"),
            ({"features": [{"model": "included"}]}, "features.0.featureKey"),
            ({"features": [{"featureKey": "tokens", "model": "flat"}]}, "features.0.model"),
            (
                {"features": [{"featureKey": "tokens", "model": "per_unit"}]},
                "features.0.pricePerUnit",
            ),
            (
                {"features": [{"featureKey": "tokens", "model": "per_unit", "unitPrice": 1}]},
                "features.0.unitPrice",
            ),
            (
                {"features": [{"featureKey": "tokens", "model": "package", "pricePerUnit": 1}]},
                "features.0.packageSize",
            ),
            (
                {
                    "features": [
                        {
                            "featureKey": "tokens",
                            "model": "package",
                            "pricePerUnit": 1,
                            "packageSize": 0,
                        }
                    ]
                },
                "features.0.packageSize",
            ),
            (
                {
                    "features": [
                        {
                            "featureKey": "tokens",
                            "model": "graduated",
                            "tiers": [
                                {"upTo": 100, "pricePerUnit": 1},
                                {"upTo": 50, "pricePerUnit": 1},
                                {"upTo": None, "pricePerUnit": 1},
                            ],
                        }
                    ]
                },
                "features.0.tiers.1.upTo",
            ),
            (
                {
                    "features": [
                        {
                            "featureKey": "tokens",
                            "model": "volume",
                            "tiers": [{"upTo": None, "pricePerUnit": -1}],
                        }
                    ]
                },
                "features.0.tiers.0.pricePerUnit",
            ),
            (
                {"features": [{"featureKey": "tokens", "maxUsage": 0}]},
                "features.0.maxUsage",
            ),
            (
                {"features": [{"featureKey": "tokens", "overagePricePerUnit": 1}]},
                "features.0.overagePricePerUnit",
            ),
            (
                {"features": [{"featureKey": "tokens", "resetInterval": "hour"}]},
                "features.0.resetInterval",
            ),
            (
                {"features": [{"featureKey": "tokens", "creditsPerUnit": 1}]},
                "features.0.creditDenomination",
            ),
            (
                {"features": [{"featureKey": "tokens"}, {"featureKey": "tokens"}]},
                "features.1.featureKey",
            ),
        ],
    )
    def test_bad_bodies_are_400_envelopes(self, tenant, features, overrides, field):
        response = tenant.api().post(URL, pro_body(**overrides), format="json")
        error = assert_error(response, 400, "validation_failed")
        assert field in error["fields"], error
        assert not Plan.objects.exists()


class TestLifecycle:
    def test_draft_edits_then_activation_freezes_terms(self, tenant, features):
        api = tenant.api()
        api.post(URL, pro_body(features=[]), format="json")

        # A draft: everything may change.
        response = api.patch(f"{URL}/pro", {"priceAmount": 59, "interval": "annual"}, format="json")
        assert response.status_code == 200, response.content
        assert (response.json()["priceAmount"], response.json()["intervalMonths"]) == ("59", 12)

        # No feature yet: activation is refused.
        assert_error(api.post(f"{URL}/pro/activate"), 409, "plan_has_no_features")

        rule = {"model": "per_unit", "pricePerUnit": "0.01"}
        response = api.put(f"{URL}/pro/features/tokens", rule, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["summary"] == "$0.01 per token"
        rule["pricePerUnit"] = "0.02"
        assert api.put(f"{URL}/pro/features/tokens", rule, format="json").status_code == 200
        assert api.put(f"{URL}/pro/features/seats", {}, format="json").status_code == 200
        assert api.delete(f"{URL}/pro/features/seats").status_code == 204
        features_now = api.get(f"{URL}/pro/features").json()["items"]
        assert [(f["key"], f["pricing"]["pricePerUnit"]) for f in features_now] == [
            ("tokens", "0.02")
        ]

        response = api.post(f"{URL}/pro/activate")
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "ACTIVE"
        assert response.json()["activatedAt"]
        assert api.post(f"{URL}/pro/activate").status_code == 200  # idempotent

        # Active: commercial terms are frozen, with a clear code and the fields named.
        error = assert_error(
            api.patch(f"{URL}/pro", {"priceAmount": 10, "currency": "EUR"}, format="json"),
            409,
            "plan_terms_frozen",
        )
        assert set(error["fields"]) == {"priceAmount", "currency"}
        assert_error(
            api.patch(f"{URL}/pro", {"key": "pro2"}, format="json"), 409, "plan_terms_frozen"
        )
        assert_error(
            api.put(f"{URL}/pro/features/tokens", rule, format="json"), 409, "plan_terms_frozen"
        )
        assert_error(
            api.put(f"{URL}/pro/features/seats", {}, format="json"), 409, "plan_terms_frozen"
        )
        assert_error(api.delete(f"{URL}/pro/features/tokens"), 409, "plan_terms_frozen")
        assert_error(api.delete(f"{URL}/pro"), 409, "plan_not_draft")

        # ...but its name, description and metadata, and an unchanged price, may be sent.
        response = api.patch(
            f"{URL}/pro",
            {"name": "Pro 2026", "priceAmount": "59.00", "metadata": {"tier": 2}},
            format="json",
        )
        assert response.status_code == 200, response.content
        assert (response.json()["name"], response.json()["metadata"]) == ("Pro 2026", {"tier": 2})
        plan = Plan.objects.get(key="pro")
        assert plan.price_amount == 59
        assert plan.rules.get().unit_price == Decimal("0.02")

        response = api.post(f"{URL}/pro/archive")
        assert (response.status_code, response.json()["status"]) == (200, "ARCHIVED")
        assert api.post(f"{URL}/pro/archive").status_code == 200
        assert_error(api.post(f"{URL}/pro/activate"), 409, "plan_archived")
        assert_error(
            api.patch(f"{URL}/pro", {"priceAmount": 1}, format="json"), 409, "plan_terms_frozen"
        )

    def test_a_draft_can_be_deleted(self, tenant, features):
        api = tenant.api()
        plan_id = api.post(URL, pro_body(), format="json").json()["id"]
        assert api.delete(f"{URL}/{plan_id}").status_code == 204
        assert not Plan.objects.exists()
        assert not PlanFeatureRule.objects.exists()

    def test_unlinking_a_feature_not_on_the_plan_is_404(self, tenant, features):
        api = tenant.api()
        api.post(URL, pro_body(), format="json")
        assert_error(api.delete(f"{URL}/pro/features/seats"), 404, "feature_not_on_plan")
        assert_error(api.get(f"{URL}/pro/features/seats"), 404, "feature_not_on_plan")
        assert_error(api.put(f"{URL}/pro/features/missing", {}, format="json"), 404, "not_found")

    def test_rule_put_validation_and_path_agreement(self, tenant, features):
        api = tenant.api()
        api.post(URL, pro_body(features=[]), format="json")
        error = assert_error(
            api.put(
                f"{URL}/pro/features/tokens",
                {"model": "graduated", "tiers": [{"upTo": 10, "pricePerUnit": 1}]},
                format="json",
            ),
            400,
            "validation_failed",
        )
        assert "tiers.0.upTo" in error["fields"]
        assert_error(
            api.put(f"{URL}/pro/features/tokens", {"featureKey": "seats"}, format="json"),
            400,
            "validation_failed",
        )
        assert_error(
            api.put(f"{URL}/pro/features/tokens", ["x"], format="json"), 400, "validation_failed"
        )
        assert not PlanFeatureRule.objects.exists()


class TestRead:
    def test_clients_see_active_plans_by_default(self, tenant, features):
        make_plan(tenant.test, "starter", price=0)
        make_plan(tenant.test, "pro", price=49)
        make_plan(tenant.test, "draft", active=False)
        api = tenant.api()
        body = api.get(URL).json()
        assert [p["key"] for p in body["items"]] == ["pro", "starter"]
        assert body["hasMore"] is False
        assert body["items"][0]["features"][0]["summary"] == "$0.002 per token"
        assert [p["key"] for p in api.get(URL, {"status": "DRAFT"}).json()["items"]] == ["draft"]
        assert len(api.get(URL, {"status": "all"}).json()["items"]) == 3
        assert_error(api.get(URL, {"status": "gone"}), 400, "validation_failed")

    def test_get_by_id_or_key(self, tenant):
        plan = make_plan(tenant.test, "pro")
        api = tenant.api()
        assert api.get(f"{URL}/{plan.pk}").json()["key"] == "pro"
        assert api.get(f"{URL}/pro").json()["id"] == str(plan.pk)
        assert_error(api.get(f"{URL}/nope"), 404, "not_found")
        assert_error(api.get(f"{URL}/{'x' * 300}"), 404, "not_found")

    def test_list_query_count_does_not_grow_with_plans(self, tenant):
        api = tenant.api()
        make_plan(tenant.test, "one")
        api.get(URL)  # warm the key cache
        with CaptureQueriesContext(connection) as few:
            assert len(api.get(URL).json()["items"]) == 1
        for index in range(5):
            make_plan(
                tenant.test, f"p{index}", features={"tokens": RuleSpec(), f"f{index}": RuleSpec()}
            )
        with CaptureQueriesContext(connection) as many:
            assert len(api.get(URL).json()["items"]) == 6
        assert len(many.captured_queries) == len(few.captured_queries)


class TestScopesAndIsolation:
    def test_scopes(self, tenant, features):
        reader = tenant.api(make_key(tenant.test, "obs", scopes=["usage.read"]).plaintext)
        make_plan(tenant.test, "pro")
        assert reader.get(URL).status_code == 200
        error = assert_error(
            reader.post(URL, pro_body(key="x"), format="json"), 403, "scope_denied"
        )
        assert error["requiredScope"] == "usage.write"
        assert_error(reader.post(f"{URL}/pro/archive"), 403, "scope_denied")
        assert_error(
            reader.put(f"{URL}/pro/features/seats", {}, format="json"), 403, "scope_denied"
        )
        nobody = tenant.api(make_key(tenant.test, "obs", scopes=["events.write"]).plaintext)
        assert_error(nobody.get(URL), 403, "scope_denied")
        assert Plan.objects.get(key="pro").status == Plan.Status.ACTIVE

    def test_other_organization_and_other_environment_see_nothing(self, tenant, outsider):
        plan = make_plan(tenant.test, "pro")
        make_feature(outsider.test, "tokens")
        for api in (outsider.api(), tenant.api(tenant.sk_live)):
            assert api.get(URL).json()["items"] == []
            assert api.get(URL, {"status": "all"}).json()["items"] == []
            for ref in ("pro", str(plan.pk)):
                assert_error(api.get(f"{URL}/{ref}"), 404, "not_found")
                assert_error(
                    api.patch(f"{URL}/{ref}", {"name": "X"}, format="json"), 404, "not_found"
                )
                assert_error(api.post(f"{URL}/{ref}/archive"), 404, "not_found")
                assert_error(api.delete(f"{URL}/{ref}"), 404, "not_found")
                assert_error(api.get(f"{URL}/{ref}/features"), 404, "not_found")
        plan.refresh_from_db()
        assert (plan.name, plan.status) == ("Pro", Plan.Status.ACTIVE)

    def test_a_plan_cannot_use_another_environments_feature(self, tenant):
        make_feature(tenant.live, "live_only")
        response = tenant.api().post(
            URL, pro_body(features=[{"featureKey": "live_only"}]), format="json"
        )
        error = assert_error(response, 400, "validation_failed")
        assert "features.0.featureKey" in error["fields"]
        tenant.api().post(URL, pro_body(features=[]), format="json")
        assert_error(
            tenant.api().put(f"{URL}/pro/features/live_only", {}, format="json"), 404, "not_found"
        )
