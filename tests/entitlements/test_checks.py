"""Entitlement checks through the API: the decision order, usage from the counters (and
from PostgreSQL when Redis is down or flushed), credits, tenancy and scopes."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from apps.core.redis import get_redis
from apps.subscriptions.services import subscription_set_past_due
from tests.factories import make_customer, make_key

from .conftest import SYSTEM, rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def capped(platform):
    """cus_1 on "pro": tokens at $0.002 with a hard cap of 100 per billing period."""
    plan = platform.plan("pro", {"tokens": rule(price="0.002", cap="100")})
    platform.subscribe(plan)
    return platform


class TestDecisionOrder:
    def test_unknown_customer_is_denied_no_subscription(self, capped):
        body = capped.check(ref="nobody")
        assert body["allowed"] is False
        assert body["reason"]["code"] == "no_subscription"

    def test_customer_without_subscription(self, capped):
        make_customer(capped.env, "cus_free")
        body = capped.check(ref="cus_free")
        assert (body["allowed"], body["reason"]["code"]) == (False, "no_subscription")

    def test_allowed_with_usage_and_no_reason(self, capped):
        body = capped.check()
        assert body["allowed"] is True and body["reason"] is None
        usage = body["usage"]
        assert (usage["used"], usage["limit"], usage["remaining"]) == ("0", "100", "100")
        assert usage["unlimited"] is False
        assert usage["resetsAt"] == usage["periodEnd"]
        assert body["planKey"] == "pro"

    def test_feature_not_in_plan(self, capped):
        body = capped.check("images")
        assert (body["allowed"], body["reason"]["code"]) == (False, "feature_not_in_plan")

    def test_disabled_feature_is_not_in_plan(self, platform):
        plan = platform.plan("pro", {"tokens": rule(price="1", enabled=False)})
        platform.subscribe(plan)
        body = platform.check()
        assert (body["allowed"], body["reason"]["code"]) == (False, "feature_not_in_plan")

    def test_past_due_denies_but_reports_usage(self, capped):
        capped.event(units=7)
        subscription = capped.customer().subscriptions.get()
        with capped.capture(execute=True):
            subscription_set_past_due(subscription=subscription, past_due=True, actor=SYSTEM)
        body = capped.check()
        assert (body["allowed"], body["reason"]["code"]) == (False, "past_due")
        assert body["usage"]["used"] == "7"
        with capped.capture(execute=True):
            subscription_set_past_due(subscription=subscription, past_due=False, actor=SYSTEM)
        assert capped.check()["allowed"] is True

    def test_unlimited_feature(self, platform):
        platform.subscribe(platform.plan("pro", {"tokens": rule(price="0.1")}))
        platform.event(units=5)
        usage = platform.check(units=10**9)["usage"]
        assert usage["unlimited"] is True and usage["limit"] is None
        assert usage["used"] == "5" and usage["remaining"] is None


class TestLimits:
    def test_hard_cap_reached(self, capped):
        capped.event(units=99)
        assert capped.check()["allowed"] is True
        assert capped.check(units=2)["reason"]["code"] == "limit_reached"
        assert capped.check(units=1)["allowed"] is True
        capped.event(units=1)
        body = capped.check()
        assert (body["allowed"], body["reason"]["code"]) == (False, "limit_reached")
        assert body["usage"]["remaining"] == "0"

    def test_soft_cap_allows_overage(self, platform):
        plan = platform.plan("pro", {"tokens": rule("included", cap="10", overage="0.5")})
        platform.subscribe(plan)
        platform.event(units=15)
        body = platform.check(units=100)
        assert body["allowed"] is True
        assert (body["usage"]["used"], body["usage"]["remaining"]) == ("15", "0")
        assert body["usage"]["overagePricePerUnit"] == "0.5"


class TestCountersInStepWithIngestion:
    def test_a_check_right_after_an_event_sees_it(self, capped):
        assert capped.check()["usage"]["used"] == "0"
        counter = capped.counter()
        assert counter[b"g"]  # the check built the counter: the next ones read Redis only
        for expected in ("12.5", "25", "37.5"):
            capped.event(units="12.5")
            assert capped.check()["usage"]["used"] == expected
        fields = {k: v for k, v in capped.counter().items() if k.startswith(b"u:")}
        assert list(fields.values()) == [b"37500000"]  # micro-units

    def test_after_redis_is_flushed_checks_read_the_ledger_and_rebuild(self, capped):
        capped.event(units=30)
        capped.check()
        get_redis().flushdb()  # our own db index only
        assert capped.check()["usage"]["used"] == "30"
        assert capped.counter()[b"g"]
        capped.event(units=5)
        assert capped.check()["usage"]["used"] == "35"

    def test_units_finer_than_micro_units_are_read_from_the_ledger(self, capped):
        capped.check()
        capped.event(units="0.0000001")
        counter = capped.counter()
        assert b"x" in counter.values()  # the field cannot hold it exactly
        assert capped.check()["usage"]["used"] == "0.0000001"
        capped.event(units="2")
        assert capped.check()["usage"]["used"] == "2.0000001"

    def test_with_redis_down_checks_and_events_still_work(self, capped, dead_redis):
        capped.event(units=60)
        capped.event(units=40)
        body = capped.check()
        assert (body["allowed"], body["usage"]["used"]) == (False, "100")
        assert body["reason"]["code"] == "limit_reached"

    def test_redis_down_then_back_sees_events_made_meanwhile(self, capped, settings):
        capped.check()  # builds the counter
        from django.test import override_settings

        from .conftest import DEAD_REDIS

        with override_settings(REDIS_URL=DEAD_REDIS):
            get_redis.cache_clear()
            capped.event(units=9)
            assert capped.check()["usage"]["used"] == "9"
        get_redis.cache_clear()
        # The counter missed the event while Redis was unreachable: it was dropped (or is
        # rebuilt when too old); the answer is right either way.
        assert capped.check()["usage"]["used"] == "9"


class TestCredits:
    @pytest.fixture
    def backed(self, platform):
        plan = platform.plan(
            "pro", {"tokens": rule(price="0.01", credits="AI_CREDITS", per_unit="2")}
        )
        platform.subscribe(plan)
        pool = platform.pool()
        platform.grant(pool, "20")
        return platform

    def test_credit_balance_in_the_check(self, backed):
        body = backed.check(units=10)
        assert body["allowed"] is True
        credits = body["credits"]
        assert credits["denomination"] == "AI_CREDITS"
        assert (credits["balance"], credits["requiredCredits"], credits["hardLimit"]) == (
            "20",
            "20",
            True,
        )

    def test_deducted_at_ingestion_then_exhausted(self, backed):
        response = backed.event(units=6)
        assert response.status_code == 201
        body = response.json()
        assert body["creditsDeducted"] == "12" and body["remainingBalance"] == "8"
        assert backed.check(units=4)["allowed"] is True
        denied = backed.check(units=5)
        assert (denied["allowed"], denied["reason"]["code"]) == (False, "credits_exhausted")

    def test_hard_pool_never_below_zero_event_flagged(self, backed):
        body = backed.event(units=15).json()  # 30 credits asked, 20 held
        assert body["insufficientCredits"] is True
        assert body["creditShortfall"] == "10" and body["creditsDeducted"] == "20"
        assert body["usageUnits"] == "15"  # the event is stored with its real usage
        from apps.events.models import Event

        event = Event.objects.get(pk=int(body["id"]))
        assert event.flags["insufficient_credits"] is True
        assert event.flags["credit_shortfall"] == "10"
        assert event.usage_units == D(15)
        check = backed.check()
        assert (check["allowed"], check["reason"]["code"]) == (False, "credits_exhausted")
        assert check["credits"]["balance"] == "0"

    def test_no_pool_means_exhausted(self, platform):
        plan = platform.plan("pro", {"tokens": rule(price="1", credits="AI_CREDITS", per_unit="1")})
        platform.subscribe(plan)
        platform.pool("someone_else")  # the credit model exists; cus_1 has no pool
        body = platform.check()
        assert (body["allowed"], body["reason"]["code"]) == (False, "credits_exhausted")


class TestTenancyAndScopes:
    def test_outsider_and_other_environment_see_nothing(self, capped, outsider):
        capped.event(units=3)
        for key in (outsider.sk_test, capped.tenant.sk_live):
            body = capped.check(key=key)
            assert (body["allowed"], body["reason"]["code"]) == (False, "no_subscription")
            assert "usage" not in body
            api = capped.api(key)
            assert api.get("/api/v1/client/entitlements/cus_1/tokens").status_code == 404
            assert api.get("/api/v1/client/entitlements/cus_1").status_code == 404

    def test_scope_denied(self, capped):
        key = make_key(capped.env, "obs", scopes=["events.write"]).plaintext
        response = capped.api(key).post(
            "/api/v1/client/entitlements/check",
            {"customerReferenceId": "cus_1", "featureKey": "tokens"},
            format="json",
        )
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "scope_denied"

    def test_reserve_needs_events_write(self, capped):
        key = make_key(capped.env, "obs", scopes=["usage.read"]).plaintext
        response = capped.api(key).post(
            "/api/v1/client/entitlements/check",
            {"customerReferenceId": "cus_1", "featureKey": "tokens", "reserve": True},
            format="json",
        )
        assert response.status_code == 403
        assert response.json()["error"]["requiredScope"] == "events.write"
        body = capped.check(key=key)  # a plain check is fine
        assert body["allowed"] is True

    def test_customer_key_is_pinned(self, capped):
        other = make_customer(capped.env, "cus_2")
        key = make_key(capped.env, "ck", customer=other, scopes=["read"]).plaintext
        api = capped.api(key)
        response = api.post(
            "/api/v1/client/entitlements/check",
            {"customerReferenceId": "cus_1", "featureKey": "tokens"},
            format="json",
        )
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "customer_mismatch"
        own = capped.check(ref="cus_2", key=key)
        assert own["reason"]["code"] == "no_subscription"

    def test_bad_input_is_400(self, capped):
        api = capped.api()
        for body, field in (
            ({"featureKey": "tokens"}, "customerReferenceId"),
            ({"customerReferenceId": "cus_1", "featureKey": 5}, "featureKey"),
            ({"customerReferenceId": "cus_1", "featureKey": "t", "units": -1}, "units"),
            ({"customerReferenceId": "cus_1", "featureKey": "t", "units": "1e400"}, "units"),
            ({"customerReferenceId": "cus_1", "featureKey": "t", "reserve": "yes"}, "reserve"),
            ({"customerReferenceId": "cus_1", "featureKey": "t", "ttlSeconds": 0}, "ttlSeconds"),
        ):
            response = api.post("/api/v1/client/entitlements/check", body, format="json")
            assert response.status_code == 400, body
            assert field in response.json()["error"]["fields"]

    def test_bad_or_missing_key_is_401(self, capped):
        from rest_framework.test import APIClient

        body = {"customerReferenceId": "cus_1", "featureKey": "tokens"}
        for client in (capped.api("sk_test_" + "0" * 32), APIClient()):
            response = client.post("/api/v1/client/entitlements/check", body, format="json")
            assert response.status_code == 401
            assert response.json()["error"]["code"] in {"invalid_key", "unauthorized"}

    def test_rate_limited_like_every_endpoint(self, capped, settings):
        settings.API_RATE_LIMIT_PER_SECOND = 1
        body = {"customerReferenceId": "cus_1", "featureKey": "tokens"}
        statuses = [
            capped.api().post("/api/v1/client/entitlements/check", body, format="json")
            for _ in range(3)
        ]
        limited = [r for r in statuses if r.status_code == 429]
        assert limited and limited[0]["Retry-After"]
        assert limited[0].json()["error"]["code"] == "rate_limited"

    def test_the_check_records_the_key_use(self, capped):
        from apps.apikeys.models import ApiKey

        capped.check()
        key = ApiKey.objects.get(environment=capped.env, kind="sk")
        assert key.last_used_at is not None

    def test_fails_closed_on_internal_errors(self, capped, monkeypatch):
        from apps.entitlements import api

        def broken(*args, **kwargs):
            raise RuntimeError("boom")

        monkeypatch.setattr(api, "decide", broken)
        body = capped.check()
        assert body["allowed"] is False
        assert body["reason"]["code"] == "internal_error"


class TestOtherEndpoints:
    def test_get_check_and_units(self, capped):
        capped.event(units=95)
        api = capped.api()
        body = api.get("/api/v1/client/entitlements/cus_1/tokens").json()
        assert body["allowed"] is True and body["usage"]["used"] == "95"
        body = api.get("/api/v1/client/entitlements/cus_1/tokens", {"units": "6"}).json()
        assert body["reason"]["code"] == "limit_reached"
        assert api.get("/api/v1/client/entitlements/nobody/tokens").status_code == 404

    def test_list_of_a_customer(self, platform):
        plan = platform.plan(
            "pro",
            {"tokens": rule(price="0.1", cap="10"), "images": rule("included")},
        )
        platform.subscribe(plan)
        platform.event(units=10)
        body = platform.api().get("/api/v1/client/entitlements/cus_1").json()
        assert [(i["featureKey"], i["allowed"]) for i in body["items"]] == [
            ("images", True),
            ("tokens", False),
        ]
        assert body["hasMore"] is False

    def test_list_of_a_customer_named_check(self, platform):
        platform.subscribe(platform.plan("pro", {"tokens": rule(price="1")}), "check")
        body = platform.api().get("/api/v1/client/entitlements/check").json()
        assert [i["featureKey"] for i in body["items"]] == ["tokens"]

    def test_evaluate_projects_usage_and_quotes_credits(self, platform):
        plan = platform.plan(
            "pro",
            {"tokens": rule(price="0.01", cap="100", credits="AI_CREDITS", per_unit="0.5")},
        )
        platform.subscribe(plan)
        platform.grant(platform.pool(), "1000")
        platform.event(units=70)
        with platform.capture(execute=True):
            response = platform.api().post(
                "/api/v1/client/entitlements",
                {
                    "customerReferenceId": "cus_1",
                    "featureKey": "tokens",
                    "usage": {"usageUnits": 40, "model": "gpt-4o"},
                    "context": {"flowId": "flow-1"},
                },
                format="json",
            )
        body = response.json()
        assert body["allowed"] is False and body["reason"]["code"] == "limit_reached"
        assert body["simulation"] == {
            "requestedUsage": "40",
            "projectedUsage": "110",
            "projectedRemaining": "0",
            "wouldExceedLimit": True,
        }
        assert body["creditQuote"]["estimatedCredits"] == "20"
        assert body["creditQuote"]["weight"] == "0.5"
        assert body["flowId"] == "flow-1"

    def test_evaluate_refuses_a_context_that_is_not_an_object(self, platform):
        # It was ignored (and a new flowId minted) where the schema says an object.
        response = platform.api().post(
            "/api/v1/client/entitlements",
            {"customerReferenceId": "cus_1", "featureKey": "tokens", "context": ["flow-1"]},
            format="json",
        )
        assert response.status_code == 400
        assert response.json()["error"]["fields"] == {"context": ["Must be an object."]}

    def test_evaluate_checks_top_level_units_and_model_even_beside_usage(self, platform):
        # They were ignored when usage named its own, where the schema bounds them.
        response = platform.api().post(
            "/api/v1/client/entitlements",
            {
                "customerReferenceId": "cus_1",
                "featureKey": "tokens",
                "usage": {"usageUnits": 5, "model": "gpt-4o"},
                "units": "many",
                "model": 7,
            },
            format="json",
        )
        assert response.status_code == 400
        assert set(response.json()["error"]["fields"]) == {"units", "model"}

    def test_usage_report_per_feature(self, capped):
        capped.event(units=40)
        body = capped.api().get("/api/v1/client/customers/cus_1/usage").json()
        (subscription,) = body["subscriptions"]
        assert subscription["planKey"] == "pro"
        (feature,) = subscription["features"]
        assert (feature["featureKey"], feature["used"], feature["limit"]) == (
            "tokens",
            "40",
            "100",
        )
        assert feature["remaining"] == "60"
        assert D(feature["projectedEndOfPeriod"]) >= D(40)
