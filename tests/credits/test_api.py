"""The credits API: shapes, manual ledger operations, the two dials, the usage report;
scopes, validation errors in the envelope, and tenant isolation."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.credits.models import CreditPool, CreditTransaction, CreditWeight
from tests.credits.conftest import grant, make_feature, make_model, make_pool
from tests.factories import make_customer, make_key

pytestmark = pytest.mark.django_db
D = Decimal
BASE = "/api/v1/client/credits"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"] and error["requestId"]
    return error


def iso(when: dt.datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


@pytest.fixture
def api(tenant):
    return tenant.api()


@pytest.fixture
def funded(tenant):
    """cus_1 with a hard-limit AI_CREDITS pool holding 100 credits."""
    pool = make_pool(tenant.test, "cus_1", "AI_CREDITS", hard_limit=True)
    grant(pool, "100", "purchased", source_ref="pi_1")
    return pool


class TestCreditModels:
    def test_create_list_get_archive(self, api):
        body = {
            "name": "AI credits",
            "denomination": "AI_CREDITS",
            "hardLimit": False,
            "rolloverPolicy": "CAPPED",
            "rolloverCap": "250.5",
            "grantExpiresMonths": 3,
            "metadata": {"tier": "pro"},
        }
        created = api.post(f"{BASE}/models", body, format="json")
        assert created.status_code == 201, created.content
        model = created.json()
        assert model["denomination"] == "AI_CREDITS"
        assert (model["hardLimit"], model["rolloverPolicy"], model["rolloverCap"]) == (
            False,
            "capped",
            "250.5",
        )
        assert model["grantExpiresMonths"] == 3 and model["archivedAt"] is None
        listed = api.get(f"{BASE}/models").json()
        assert [m["id"] for m in listed["items"]] == [model["id"]] and listed["hasMore"] is False
        assert api.get(f"{BASE}/models/{model['id']}").json()["name"] == "AI credits"
        archived = api.delete(f"{BASE}/models/{model['id']}")
        assert archived.status_code == 200 and archived.json()["archivedAt"]

    def test_duplicate_and_validation(self, api):
        assert (
            api.post(
                f"{BASE}/models", {"name": "A", "denomination": "A"}, format="json"
            ).status_code
            == 201
        )
        assert_error(
            api.post(f"{BASE}/models", {"name": "A", "denomination": "A"}, format="json"),
            409,
            "denomination_exists",
        )
        cases = [
            ({"name": "x", "denomination": "has space"}, "denomination"),
            ({"name": "x", "denomination": "B" * 33}, "denomination"),
            ({"name": "x", "denomination": "C", "rolloverPolicy": "capped"}, "rolloverCap"),
            ({"name": "x", "denomination": "D", "rolloverPolicy": "sometimes"}, "rolloverPolicy"),
            (
                {"name": "x", "denomination": "E", "rolloverCap": "-1", "rolloverPolicy": "capped"},
                "rolloverCap",
            ),
            ({"name": "x", "denomination": "F", "grantExpiresMonths": 0}, "grantExpiresMonths"),
            ({"denomination": "G"}, "name"),
        ]
        for body, field in cases:
            error = assert_error(
                api.post(f"{BASE}/models", body, format="json"), 400, "validation_failed"
            )
            assert field in error["fields"], (body, error)

    def test_unknown_model_is_404(self, api):
        assert_error(api.get(f"{BASE}/models/not-a-uuid"), 404, "not_found")
        assert_error(
            api.get(f"{BASE}/models/00000000-0000-0000-0000-000000000000"), 404, "not_found"
        )


class TestAllocations:
    def test_set_list_remove(self, api, tenant):
        make_model(tenant.test, "AI_CREDITS")
        body = {
            "planKey": "pro",
            "denomination": "AI_CREDITS",
            "creditAmount": "1000",
            "grantExpiresMonths": 1,
        }
        created = api.post(f"{BASE}/allocations", body, format="json")
        assert created.status_code == 201, created.content
        allocation = created.json()
        assert (allocation["planKey"], allocation["creditAmount"], allocation["denomination"]) == (
            "pro",
            "1000",
            "AI_CREDITS",
        )
        # Setting it again replaces the amount.
        again = api.post(f"{BASE}/allocations", {**body, "creditAmount": 500}, format="json").json()
        assert again["id"] == allocation["id"] and again["creditAmount"] == "500"
        assert len(api.get(f"{BASE}/allocations", {"planKey": "pro"}).json()["items"]) == 1
        assert api.get(f"{BASE}/allocations", {"planKey": "free"}).json()["items"] == []
        assert api.delete(f"{BASE}/allocations/{allocation['id']}").status_code == 204
        assert api.get(f"{BASE}/allocations").json()["items"] == []

    def test_validation(self, api, tenant):
        make_model(tenant.test, "AI_CREDITS")
        error = assert_error(
            api.post(
                f"{BASE}/allocations",
                {"planKey": "pro", "denomination": "NOPE", "creditAmount": 1},
                format="json",
            ),
            400,
            "validation_failed",
        )
        assert "creditModelId" in error["fields"]
        error = assert_error(
            api.post(
                f"{BASE}/allocations",
                {"planKey": "pro", "denomination": "AI_CREDITS", "creditAmount": 0},
                format="json",
            ),
            400,
            "validation_failed",
        )
        assert "creditAmount" in error["fields"]


class TestGrantsAndPools:
    def test_grant_creates_the_pool_and_replays(self, api, tenant):
        make_model(tenant.test, "AI_CREDITS", hard_limit=True)
        make_customer(tenant.test, "cus_9")
        body = {
            "customerReferenceId": "cus_9",
            "denomination": "AI_CREDITS",
            "amount": "25.125",
            "grantType": "PROMOTIONAL",
            "expiresAt": iso(timezone.now() + dt.timedelta(days=30)),
            "idempotencyKey": "promo-jan",
            "description": "January promotion",
        }
        created = api.post(f"{BASE}/grants", body, format="json")
        assert created.status_code == 201, created.content
        granted = created.json()
        assert (granted["grantType"], granted["amount"], granted["remaining"]) == (
            "promotional",
            "25.125",
            "25.125",
        )
        assert granted["balanceAfter"] == "25.125" and granted["status"] == "active"
        assert granted["idempotencyKey"] == "promo-jan"
        replay = api.post(f"{BASE}/grants", body, format="json")
        assert replay.status_code == 200 and replay.json()["id"] == granted["id"]
        pools = api.get(f"{BASE}/cus_9/pools").json()["items"]
        assert len(pools) == 1
        pool = pools[0]
        assert pool["id"] == granted["creditPoolId"]
        assert (pool["balance"], pool["totalGranted"], pool["hardLimit"], pool["status"]) == (
            "25.125",
            "25.125",
            True,
            "active",
        )
        by_id = api.post(
            f"{BASE}/grants",
            {"creditPoolId": pool["id"], "amount": 1, "grantType": "refund"},
            format="json",
        )
        assert by_id.status_code == 201 and by_id.json()["balanceAfter"] == "26.125"

    def test_grant_validation(self, api, tenant, funded):
        make_customer(tenant.test, "cus_2")
        good = {"creditPoolId": str(funded.pk), "amount": "1"}
        cases = [
            ({"amount": "1"}, "creditPoolId"),
            ({**good, "amount": "0"}, "amount"),
            ({**good, "amount": "-5"}, "amount"),
            ({**good, "amount": "1.0000001"}, "amount"),
            ({**good, "amount": "ten"}, "amount"),
            ({**good, "grantType": "rollover"}, "grantType"),
            ({**good, "expiresAt": iso(timezone.now() - dt.timedelta(days=1))}, "expiresAt"),
            ({**good, "expiresAt": "tomorrow"}, "expiresAt"),
            ({**good, "currency": "EUR"}, "currency"),
            ({**good, "priority": -1}, "priority"),
            ({**good, "customerReferenceId": "cus_2"}, "customerReferenceId"),
            (
                {"customerReferenceId": "cus_2", "denomination": "UNKNOWN", "amount": 1},
                "denomination",
            ),
        ]
        for body, field in cases:
            error = assert_error(
                api.post(f"{BASE}/grants", body, format="json"), 400, "validation_failed"
            )
            assert field in error["fields"], (body, error)
        assert_error(
            api.post(
                f"{BASE}/grants",
                {"customerReferenceId": "ghost", "denomination": "AI_CREDITS", "amount": 1},
                format="json",
            ),
            404,
            "not_found",
        )
        assert_error(
            api.post(
                f"{BASE}/grants",
                {**good, "creditPoolId": "00000000-0000-0000-0000-000000000000"},
                format="json",
            ),
            404,
            "not_found",
        )
        funded.refresh_from_db()
        assert funded.balance == 100
        # A grant refused after its pool would have been created leaves no empty pool behind.
        refused = {
            "customerReferenceId": "cus_2",
            "denomination": "AI_CREDITS",
            "amount": 1,
            "expiresAt": iso(timezone.now() - dt.timedelta(hours=1)),
        }
        assert_error(api.post(f"{BASE}/grants", refused, format="json"), 400, "validation_failed")
        assert not CreditPool.objects.filter(customer__reference_id="cus_2").exists()

    def test_pool_detail_grants_and_ledger_pages(self, api, funded):
        for _ in range(4):
            api.post(
                f"{BASE}/deductions",
                {"creditPoolId": str(funded.pk), "amount": "2.5"},
                format="json",
            )
        detail = api.get(f"{BASE}/cus_1/pools/{funded.pk}").json()
        assert (detail["balance"], detail["totalConsumed"]) == ("90", "10")
        grants = api.get(f"{BASE}/cus_1/pools/{funded.pk}/grants").json()["items"]
        assert [(g["grantType"], g["remaining"], g["unitPrice"]) for g in grants] == [
            ("purchased", "90", None)
        ]
        first = api.get(f"{BASE}/cus_1/pools/{funded.pk}/transactions", {"limit": 3}).json()
        assert [e["sequence"] for e in first["items"]] == [5, 4, 3] and first["hasMore"] is True
        rest = api.get(
            f"{BASE}/cus_1/pools/{funded.pk}/transactions",
            {"limit": 3, "cursor": first["nextCursor"]},
        ).json()
        assert [e["sequence"] for e in rest["items"]] == [2, 1] and rest["hasMore"] is False
        newest = first["items"][0]
        assert (
            newest["transactionType"],
            newest["amount"],
            newest["balanceBefore"],
            newest["balanceAfter"],
        ) == (
            "deduction",
            "-2.5",
            "92.5",
            "90",
        )
        assert newest["allocations"] == [{"creditGrantId": grants[0]["id"], "amount": "2.5"}]
        only_grants = api.get(
            f"{BASE}/cus_1/pools/{funded.pk}/transactions", {"transactionType": "GRANT"}
        ).json()
        assert [e["transactionType"] for e in only_grants["items"]] == ["grant"]
        assert_error(
            api.get(f"{BASE}/cus_1/pools/{funded.pk}/transactions", {"cursor": "!!"}),
            400,
            "validation_failed",
        )
        assert_error(
            api.get(f"{BASE}/cus_1/pools/{funded.pk}/transactions", {"transactionType": "x"}),
            400,
            "validation_failed",
        )
        assert_error(
            api.get(f"{BASE}/cus_1/pools/{funded.pk}/transactions", {"limit": 0}),
            400,
            "validation_failed",
        )

    def test_ledger_list_query_count(self, api, funded, django_assert_max_num_queries):
        for _ in range(10):
            api.post(
                f"{BASE}/deductions", {"creditPoolId": str(funded.pk), "amount": "1"}, format="json"
            )
        with django_assert_max_num_queries(8):
            response = api.get(f"{BASE}/cus_1/pools/{funded.pk}/transactions")
        assert len(response.json()["items"]) == 11

    def test_another_customers_pool_is_404(self, api, tenant, funded):
        make_customer(tenant.test, "cus_2")
        assert_error(api.get(f"{BASE}/cus_2/pools/{funded.pk}"), 404, "not_found")
        assert_error(api.get(f"{BASE}/cus_2/pools/{funded.pk}/transactions"), 404, "not_found")
        assert_error(api.get(f"{BASE}/ghost/pools"), 404, "not_found")


class TestDeductAndReverse:
    def test_deduct_then_reverse(self, api, funded):
        deducted = api.post(
            f"{BASE}/deductions",
            {
                "customerReferenceId": "cus_1",
                "denomination": "AI_CREDITS",
                "amount": "40",
                "idempotencyKey": "d1",
            },
            format="json",
        )
        assert deducted.status_code == 201, deducted.content
        entry = deducted.json()
        assert (entry["amount"], entry["balanceAfter"], entry["insufficientCredits"]) == (
            "-40",
            "60",
            False,
        )
        replay = api.post(
            f"{BASE}/deductions",
            {"creditPoolId": str(funded.pk), "amount": "40", "idempotencyKey": "d1"},
            format="json",
        )
        assert replay.status_code == 200 and replay.json()["id"] == entry["id"]
        reversed_ = api.post(
            f"{BASE}/transactions/{entry['id']}/reverse", {"description": "Goodwill"}, format="json"
        )
        assert reversed_.status_code == 201, reversed_.content
        body = reversed_.json()
        assert (body["transactionType"], body["amount"], body["balanceAfter"]) == (
            "reversal",
            "40",
            "100",
        )
        assert body["reversedTransactionId"] == entry["id"] and body["description"] == "Goodwill"
        assert_error(
            api.post(f"{BASE}/transactions/{entry['id']}/reverse"), 409, "already_reversed"
        )
        grant_entry = CreditTransaction.objects.get(pool=funded, transaction_type="grant")
        assert_error(
            api.post(f"{BASE}/transactions/{grant_entry.pk}/reverse"), 409, "not_reversible"
        )
        assert_error(api.post(f"{BASE}/transactions/nope/reverse"), 404, "not_found")

    def test_hard_limit_refuses_an_overdraft(self, api, funded):
        error = assert_error(
            api.post(
                f"{BASE}/deductions",
                {"creditPoolId": str(funded.pk), "amount": "100.000001"},
                format="json",
            ),
            409,
            "insufficient_credits",
        )
        assert error["balance"] == "100"
        funded.refresh_from_db()
        assert funded.balance == 100

    def test_soft_limit_allows_it(self, api, tenant):
        pool = make_pool(tenant.test, "cus_soft", "SOFT", hard_limit=False)
        response = api.post(
            f"{BASE}/deductions", {"creditPoolId": str(pool.pk), "amount": "3"}, format="json"
        )
        assert response.status_code == 201
        assert (response.json()["balanceAfter"], response.json()["unbackedCredits"]) == ("-3", "3")

    def test_deduction_validation(self, api, funded):
        for body, field in [
            ({"creditPoolId": str(funded.pk)}, "amount"),
            ({"creditPoolId": str(funded.pk), "amount": "0"}, "amount"),
            (
                {"creditPoolId": str(funded.pk), "amount": 1, "idempotencyKey": "event:x"},
                "idempotencyKey",
            ),
            ({"amount": 1, "customerReferenceId": "cus_1"}, "creditPoolId"),
        ]:
            error = assert_error(
                api.post(f"{BASE}/deductions", body, format="json"), 400, "validation_failed"
            )
            assert field in error["fields"], (body, error)
        assert_error(
            api.post(f"{BASE}/deductions", b"{bad", content_type="application/json"),
            400,
            "malformed_body",
        )


class TestWeightsAndPrices:
    def test_publish_list_withdraw(self, api, tenant):
        make_feature(tenant.test, "chat")
        make_feature(tenant.test, "search")
        when = timezone.now() + dt.timedelta(days=1)
        body = {
            "effectiveFrom": iso(when),
            "entries": [
                {"featureKey": "chat", "creditsPerUnit": "1.5"},
                {"featureKey": "chat", "model": "gpt-4o", "creditsPerUnit": 4},
            ],
        }
        published = api.post(f"{BASE}/weights/publish", body, format="json")
        assert published.status_code == 201, published.content
        items = published.json()["items"]
        assert {(w["featureKey"], w["model"], w["creditsPerUnit"], w["status"]) for w in items} == {
            ("chat", None, "1.5", "scheduled"),
            ("chat", "gpt-4o", "4", "scheduled"),
        }
        assert api.post(f"{BASE}/weights/publish", body, format="json").status_code == 201  # replay
        assert api.get(f"{BASE}/weights").json()["items"] == []  # nothing in force yet
        assert len(api.get(f"{BASE}/weights", {"scheduled": "true"}).json()["items"]) == 2
        later = api.get(f"{BASE}/weights", {"at": iso(when + dt.timedelta(minutes=1))}).json()[
            "items"
        ]
        assert len(later) == 2
        conflict = {**body, "entries": [{"featureKey": "search", "creditsPerUnit": 1}]}
        assert_error(
            api.post(f"{BASE}/weights/publish", conflict, format="json"), 409, "weight_conflict"
        )
        assert api.delete(f"{BASE}/weights/{items[0]['id']}").status_code == 204

    def test_weight_in_force_cannot_be_withdrawn(self, api, tenant):
        feature = make_feature(tenant.test, "chat")
        weight = CreditWeight.objects.create(
            environment=tenant.test,
            feature=feature,
            credits_per_unit=2,
            effective_from=timezone.now() - dt.timedelta(hours=1),
        )
        assert [w["creditsPerUnit"] for w in api.get(f"{BASE}/weights").json()["items"]] == ["2"]
        assert_error(api.delete(f"{BASE}/weights/{weight.pk}"), 409, "weight_in_force")

    def test_weight_validation(self, api, tenant):
        make_feature(tenant.test, "chat")
        soon = iso(timezone.now() + dt.timedelta(seconds=5))
        later = iso(timezone.now() + dt.timedelta(days=1))
        cases = [
            (
                {"effectiveFrom": soon, "entries": [{"featureKey": "chat", "creditsPerUnit": 1}]},
                "effectiveFrom",
            ),
            ({"effectiveFrom": later, "entries": []}, "entries"),
            (
                {"effectiveFrom": later, "entries": [{"featureKey": "nope", "creditsPerUnit": 1}]},
                "entries.0.featureKey",
            ),
            (
                {"effectiveFrom": later, "entries": [{"featureKey": "chat", "creditsPerUnit": 0}]},
                "entries.0.creditsPerUnit",
            ),
            (
                {
                    "effectiveFrom": later,
                    "entries": [{"featureKey": "chat", "creditsPerUnit": "2000000"}],
                },
                "entries.0.creditsPerUnit",
            ),
            ({"effectiveFrom": later, "entries": [{"creditsPerUnit": 1}]}, "entries.0.featureKey"),
            ({"entries": [{"featureKey": "chat", "creditsPerUnit": 1}]}, "effectiveFrom"),
        ]
        for body, field in cases:
            error = assert_error(
                api.post(f"{BASE}/weights/publish", body, format="json"), 400, "validation_failed"
            )
            assert any(name.startswith(field) for name in error["fields"]), (body, error)
        assert_error(api.get(f"{BASE}/weights", {"at": "yesterday"}), 400, "validation_failed")

    def test_price_book(self, api, tenant):
        make_model(tenant.test, "AI_CREDITS")
        when = timezone.now() + dt.timedelta(hours=2)
        body = {
            "effectiveFrom": iso(when),
            "entries": [{"denomination": "AI_CREDITS", "pricePerCredit": "0.002"}],
        }
        published = api.post(f"{BASE}/prices/publish", body, format="json")
        assert published.status_code == 201, published.content
        assert published.json()["items"][0]["currency"] == "USD"
        # Only prices already in force are shown.
        assert api.get(f"{BASE}/prices").json()["items"] == []
        unknown = {
            "effectiveFrom": iso(when + dt.timedelta(hours=1)),
            "entries": [{"denomination": "X", "pricePerCredit": 1}],
        }
        error = assert_error(
            api.post(f"{BASE}/prices/publish", unknown, format="json"), 400, "validation_failed"
        )
        assert "entries.0.denomination" in error["fields"]
        other = {**body, "entries": [{"denomination": "AI_CREDITS", "pricePerCredit": "0.003"}]}
        assert_error(
            api.post(f"{BASE}/prices/publish", other, format="json"), 409, "price_conflict"
        )


class TestUsage:
    def test_pool_burndown(self, api, tenant, funded):
        # Created 9.5 days ago: 20 credits used since, so 20 / 9.5 per day.
        CreditPool.objects.filter(pk=funded.pk).update(
            created_at=timezone.now() - dt.timedelta(days=9, hours=12)
        )
        for _ in range(5):
            api.post(
                f"{BASE}/deductions", {"creditPoolId": str(funded.pk), "amount": "4"}, format="json"
            )
        response = api.get("/api/v1/client/customers/cus_1/usage")
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["customerReferenceId"] == "cus_1" and body["asOf"]
        assert set(body) == {"customerReferenceId", "asOf", "subscriptions", "creditPools"}
        (pool,) = body["creditPools"]
        assert (pool["poolId"], pool["denomination"], pool["balance"], pool["totalConsumed"]) == (
            str(funded.pk),
            "AI_CREDITS",
            "80",
            "20",
        )
        burn = D(pool["averageDailyBurn"])
        assert abs(burn - D(20) / D("9.5")) < D("0.0001")
        assert pool["burnWindowDays"] == "9.5"
        # 80 credits at 2.105 a day: 38.0 days, rounded up.
        expected = (timezone.now() + dt.timedelta(days=39)).date().isoformat()
        assert pool["projectedDepletionDate"] == expected
        assert pool["pricePerCredit"] is None

    def test_no_usage_no_projection_and_empty_for_customer_without_pools(self, api, tenant, funded):
        make_customer(tenant.test, "cus_empty")
        assert api.get("/api/v1/client/customers/cus_empty/usage").json()["creditPools"] == []
        (pool,) = api.get("/api/v1/client/customers/cus_1/usage").json()["creditPools"]
        assert (pool["averageDailyBurn"], pool["projectedDepletionDate"]) == ("0", None)
        assert_error(api.get("/api/v1/client/customers/ghost/usage"), 404, "not_found")


class TestScopes:
    def test_read_and_write_scopes(self, tenant, funded):
        reader = tenant.api(make_key(tenant.test, "obs", scopes=["billing.read"]).plaintext)
        assert reader.get(f"{BASE}/cus_1/pools").status_code == 200
        assert reader.get(f"{BASE}/models").status_code == 200
        for path, body in [
            (f"{BASE}/grants", {"creditPoolId": str(funded.pk), "amount": 1}),
            (f"{BASE}/deductions", {"creditPoolId": str(funded.pk), "amount": 1}),
            (f"{BASE}/models", {"name": "x", "denomination": "X"}),
            (f"{BASE}/weights/publish", {}),
            (f"{BASE}/prices/publish", {}),
            (f"{BASE}/allocations", {}),
        ]:
            error = assert_error(reader.post(path, body, format="json"), 403, "scope_denied")
            assert error["requiredScope"] == "billing.write"
        usage_only = tenant.api(make_key(tenant.test, "obs", scopes=["usage.read"]).plaintext)
        assert_error(usage_only.get(f"{BASE}/cus_1/pools"), 403, "scope_denied")
        assert_error(usage_only.get(f"{BASE}/prices"), 403, "scope_denied")
        assert usage_only.get("/api/v1/client/customers/cus_1/usage").status_code == 200
        assert_error(reader.get("/api/v1/client/customers/cus_1/usage"), 403, "scope_denied")
        writer = tenant.api(make_key(tenant.test, "obs", scopes=["billing.write"]).plaintext)
        response = writer.post(
            f"{BASE}/grants", {"creditPoolId": str(funded.pk), "amount": 1}, format="json"
        )
        assert response.status_code == 201

    def test_customer_keys_read_their_own_pools_only(self, tenant, funded):
        mine = funded.customer
        other = make_pool(tenant.test, "cus_other", "AI_CREDITS")
        ck = tenant.api(make_key(tenant.test, "ck", customer=mine, scopes=["read"]).plaintext)
        assert ck.get(f"{BASE}/cus_1/pools").status_code == 200
        assert ck.get(f"{BASE}/cus_1/pools/{funded.pk}/transactions").status_code == 200
        assert ck.get("/api/v1/client/customers/cus_1/usage").status_code == 200
        assert ck.get(f"{BASE}/prices").status_code == 200
        assert_error(ck.get(f"{BASE}/cus_other/pools"), 403, "customer_mismatch")
        assert_error(ck.get(f"{BASE}/cus_other/pools/{other.pk}"), 403, "customer_mismatch")
        assert_error(ck.get("/api/v1/client/customers/cus_other/usage"), 403, "customer_mismatch")
        assert_error(
            ck.post(f"{BASE}/grants", {"creditPoolId": str(funded.pk), "amount": 1}, format="json"),
            403,
            "forbidden",
        )
        assert_error(ck.get(f"{BASE}/models"), 403, "forbidden")
        no_read = tenant.api(
            make_key(tenant.test, "ck", customer=mine, scopes=["purchase"]).plaintext
        )
        assert_error(no_read.get(f"{BASE}/cus_1/pools"), 403, "scope_denied")

    def test_no_key_is_401(self, funded):
        from rest_framework.test import APIClient

        assert_error(APIClient().get(f"{BASE}/cus_1/pools"), 401, "unauthorized")


class TestIsolation:
    """Another organization, and the other environment of the same one, see nothing."""

    @pytest.fixture
    def data(self, tenant, funded):
        feature = make_feature(tenant.test, "chat")
        CreditWeight.objects.create(
            environment=tenant.test,
            feature=feature,
            credits_per_unit=2,
            effective_from=timezone.now() - dt.timedelta(hours=1),
        )
        deduction = (
            tenant.api()
            .post(
                f"{BASE}/deductions", {"creditPoolId": str(funded.pk), "amount": 1}, format="json"
            )
            .json()
        )
        return funded, deduction

    @pytest.mark.parametrize("who", ["outsider", "live"])
    def test_strangers_see_nothing(self, tenant, outsider, data, who):
        pool, deduction = data
        stranger = outsider.api() if who == "outsider" else tenant.api(tenant.sk_live)
        env = outsider.test if who == "outsider" else tenant.live
        # Even with a customer of the same reference in their own environment.
        make_customer(env, "cus_1")
        assert stranger.get(f"{BASE}/cus_1/pools").json()["items"] == []
        assert_error(stranger.get(f"{BASE}/cus_1/pools/{pool.pk}"), 404, "not_found")
        assert_error(stranger.get(f"{BASE}/cus_1/pools/{pool.pk}/grants"), 404, "not_found")
        assert_error(stranger.get(f"{BASE}/cus_1/pools/{pool.pk}/transactions"), 404, "not_found")
        assert stranger.get(f"{BASE}/models").json()["items"] == []
        assert stranger.get(f"{BASE}/weights").json()["items"] == []
        assert stranger.get(f"{BASE}/allocations").json()["items"] == []
        assert stranger.get("/api/v1/client/customers/cus_1/usage").json()["creditPools"] == []
        assert_error(
            stranger.post(
                f"{BASE}/grants", {"creditPoolId": str(pool.pk), "amount": 5}, format="json"
            ),
            404,
            "not_found",
        )
        assert_error(
            stranger.post(
                f"{BASE}/deductions", {"creditPoolId": str(pool.pk), "amount": 5}, format="json"
            ),
            404,
            "not_found",
        )
        assert_error(
            stranger.post(f"{BASE}/transactions/{deduction['id']}/reverse"), 404, "not_found"
        )
        model_id = pool.credit_model_id
        assert_error(stranger.get(f"{BASE}/models/{model_id}"), 404, "not_found")
        assert_error(stranger.delete(f"{BASE}/models/{model_id}"), 404, "not_found")
        weight = CreditWeight.objects.get(environment=tenant.test)
        assert_error(stranger.delete(f"{BASE}/weights/{weight.pk}"), 404, "not_found")
        # A grant by reference and denomination does not reach the tenant's pool either.
        response = stranger.post(
            f"{BASE}/grants",
            {"customerReferenceId": "cus_1", "denomination": "AI_CREDITS", "amount": 5},
            format="json",
        )
        assert_error(response, 400, "validation_failed")  # no such credit model there
        pool.refresh_from_db()
        assert pool.balance == 99
