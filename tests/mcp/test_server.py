"""The MCP server: the same figures as the REST API, key auth, scope filtering and ck_
pinning, preview-then-confirm, idempotent ingestion, statelessness across a restart, and
tenant isolation; over HTTP against the live ASGI server and in process."""

from __future__ import annotations

import datetime as dt
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client

from apps.accounts.models import AuditEntry
from apps.events.models import Event
from apps.subscriptions.models import Subscription, SubscriptionChange
from tests.conftest import Tenant, make_tenant
from tests.factories import make_customer, make_key
from tests.mcp.conftest import AsgiServer, http_client, in_process, over_http
from tests.plans.helpers import make_plan

pytestmark = pytest.mark.django_db(transaction=True)

WRITE_TOOLS = {
    "ingestEvent",
    "ingestEvents",
    "createSubscription",
    "changeSubscriptionPlan",
    "cancelSubscription",
    "grantCredits",
    "purchaseCredits",
    "markInvoicePaid",
    "computeRecommendations",
    "dismissRecommendation",
    "acknowledgeAlert",
}


def _events(tenant: Tenant, key: str | None = None) -> None:
    """Three events over two customers with exact amounts, through the REST API."""
    today = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    rows = [
        ("a1", "cus_a", "chat", "0.10", "0.30"),
        ("a2", "cus_a", "search", "0.20", "0.15"),
        ("b1", "cus_b", "chat", "0.0075", "0.01"),
    ]
    api = tenant.api(key)
    for idem, customer, feature, cost, revenue in rows:
        response = api.post(
            "/api/v1/client/events",
            {
                "eventIdempotencyKey": idem,
                "eventName": "llm.call",
                "customerReferenceId": customer,
                "featureKey": feature,
                "occurredAt": (today - dt.timedelta(hours=1)).isoformat(),
                "costAmount": cost,
                "revenueAmount": revenue,
                "model": "gpt-4o",
            },
            format="json",
        )
        assert response.status_code == 201, response.content


def _call(client: Client, name: str, args: dict[str, Any] | None = None) -> Any:
    return client.call_tool(name, args or {})


def _data(result: Any) -> dict[str, Any]:
    assert result.structured_content is not None
    return dict(result.structured_content)


def _without_link(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "dashboardUrl"}


class TestSameFiguresAsRest:
    def test_margin_customers_features_models_events_equal_the_rest_answers(
        self, tenant: Tenant, asgi_server: AsgiServer
    ) -> None:
        _events(tenant)
        rest = tenant.api()
        today = dt.datetime.now(dt.UTC).date()
        window = {"from": (today - dt.timedelta(days=1)).isoformat()}
        window["to"] = (today + dt.timedelta(days=1)).isoformat()
        expected = {
            "getMarginSummary": rest.get("/api/analytics/overview", window).json(),
            "listCustomersByProfitability": rest.get("/api/customers", window).json(),
            "listFeaturesByProfitability": rest.get("/api/features", window).json(),
            "listModelsByProfitability": rest.get("/api/models", window).json(),
            "getCustomerProfitability": rest.get("/api/customers/cus_a", window).json(),
        }
        events_rest = rest.get("/api/events", {"limit": 2}).json()

        async def body(client: Client) -> dict[str, Any]:
            out = {}
            for name in expected:
                args = dict(window)
                if name == "getCustomerProfitability":
                    args["customerReferenceId"] = "cus_a"
                out[name] = _data(await client.call_tool(name, args))
            out["queryEvents"] = _data(await client.call_tool("queryEvents", {"limit": 2}))
            return out

        got = over_http(asgi_server, tenant.sk_test, body)
        for name, answer in expected.items():
            assert _without_link(got[name]) == answer, name
            assert got[name]["dashboardUrl"].startswith("http")
        assert got["getMarginSummary"]["cost"] == "0.3075"
        assert got["getMarginSummary"]["revenue"] == "0.46"
        assert _without_link(got["queryEvents"]) == events_rest
        assert events_rest["hasMore"] is True and got["queryEvents"]["nextCursor"]

    def test_a_result_has_a_short_text_rendering(self, tenant: Tenant) -> None:
        _events(tenant)

        async def body(client: Client) -> Any:
            return await client.call_tool("getMarginSummary", {})

        result = in_process(tenant.sk_test, body)
        text = result.content[0].text
        assert "3 events" in text and "$0.3075" in text and "Dashboard: http" in text


class TestAuthentication:
    def test_no_key_and_a_bad_key_are_401(self, asgi_server: AsgiServer, tenant: Tenant) -> None:
        async def post(key: str | None) -> httpx2.Response:
            async with http_client(key) as http:
                return await http.post(
                    f"{asgi_server.url}/mcp",
                    json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
                    headers={"Accept": "application/json, text/event-stream"},
                )

        missing = anyio.run(post, None)
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "unauthorized"
        bad = anyio.run(post, "sk_test_not_a_key")
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "invalid_key"

    def test_x_api_key_header_is_accepted(self, asgi_server: AsgiServer, tenant: Tenant) -> None:
        async def main() -> list[str]:
            async with httpx2.AsyncClient(headers={"X-API-Key": tenant.sk_test}) as http:
                from mcp.client.streamable_http import streamable_http_client

                transport = streamable_http_client(f"{asgi_server.url}/mcp", http_client=http)
                async with Client(transport, cache=None) as client:
                    return [t.name for t in (await client.list_tools()).tools]

        assert "getMarginSummary" in anyio.run(main)


class TestScopes:
    def test_obs_key_with_usage_read_sees_no_write_tool(self, tenant: Tenant) -> None:
        obs = make_key(tenant.test, "obs", scopes=["usage.read"]).plaintext

        async def body(client: Client) -> Any:
            tools = (await client.list_tools()).tools
            refused = await client.call_tool(
                "ingestEvent",
                {
                    "eventIdempotencyKey": "x",
                    "eventName": "e",
                    "customerReferenceId": "c",
                    "featureKey": "f",
                },
            )
            return tools, refused

        tools, refused = in_process(obs, body)
        names = {t.name for t in tools}
        assert "getMarginSummary" in names and "listPlans" in names
        assert not names & WRITE_TOOLS
        assert "queryEvents" not in names  # events.read
        assert refused.is_error
        assert _data(refused)["error"]["code"] == "scope_denied"
        assert Event.objects.count() == 0

    def test_every_tool_carries_annotations(self, tenant: Tenant) -> None:
        async def body(client: Client) -> Any:
            return (await client.list_tools()).tools

        tools = in_process(tenant.sk_test, body)
        assert len(tools) >= 30
        for t in tools:
            hints = t.annotations
            assert hints is not None and hints.read_only_hint is not None, t.name
            assert hints.destructive_hint is not None and hints.idempotent_hint is not None
            assert hints.read_only_hint == (t.name not in WRITE_TOOLS), t.name
        destructive = {t.name for t in tools if t.annotations and t.annotations.destructive_hint}
        assert destructive == {"changeSubscriptionPlan", "cancelSubscription", "markInvoicePaid"}

    def test_customer_key_sees_only_its_own_customer(self, tenant: Tenant) -> None:
        own = make_customer(tenant.test, "cus_own")
        make_customer(tenant.test, "cus_other")
        ck = make_key(tenant.test, "ck", customer=own, scopes=["read"]).plaintext

        async def body(client: Client) -> Any:
            tools = {t.name for t in (await client.list_tools()).tools}
            mine = await client.call_tool("getCustomer", {})
            other = await client.call_tool("getCustomer", {"customerReferenceId": "cus_other"})
            pools = await client.call_tool("listCreditPools", {})
            margin = await client.call_tool("getMarginSummary", {})
            return tools, mine, other, pools, margin

        tools, mine, other, pools, margin = in_process(ck, body)
        assert tools <= {
            "getCustomer",
            "getMyBudget",
            "checkEntitlement",
            "listCustomerEntitlements",
            "listSubscriptions",
            "getSubscription",
            "listCreditPools",
            "listCreditTransactions",
            "getCreditPrices",
            "listInvoices",
            "getUpcomingInvoice",
        }
        assert "getCustomer" in tools and not tools & WRITE_TOOLS
        assert not mine.is_error and "cus_own" in str(_data(mine))
        assert _data(other)["error"]["code"] == "customer_mismatch"
        assert _data(pools)["items"] == [] and not pools.is_error
        assert _data(margin)["error"]["code"] == "forbidden"


class TestPreviewThenConfirm:
    def test_cancel_without_confirm_changes_nothing_then_confirm_cancels(
        self, tenant: Tenant
    ) -> None:
        plan = make_plan(tenant.test)
        make_customer(tenant.test, "cus_1")
        created = tenant.api().post(
            "/api/v1/client/subscriptions",
            {"customerReferenceId": "cus_1", "planId": str(plan.pk)},
            format="json",
        )
        assert created.status_code == 201, created.content
        sub_id = created.json()["id"]
        args = {"subscriptionId": sub_id, "cancelMode": "IMMEDIATE"}

        async def preview(client: Client) -> Any:
            return await client.call_tool("cancelSubscription", args)

        result = _data(in_process(tenant.sk_test, preview))
        assert result["preview"] is True and result["confirmed"] is False
        assert result["after"]["status"] == "cancelled"
        assert result["before"]["status"] == "active"
        sub = Subscription.objects.get(pk=sub_id)
        assert sub.status == "active" and sub.cancelled_at is None

        async def confirm(client: Client) -> Any:
            return await client.call_tool("cancelSubscription", {**args, "confirm": True})

        done = _data(in_process(tenant.sk_test, confirm))
        assert done["confirmed"] is True
        assert Subscription.objects.get(pk=sub_id).status == "cancelled"

    def test_plan_change_preview_shows_proration_and_changes_nothing(self, tenant: Tenant) -> None:
        basic = make_plan(tenant.test, "basic", price=10)
        make_plan(tenant.test, "pro", price=40)
        make_customer(tenant.test, "cus_1")
        created = tenant.api().post(
            "/api/v1/client/subscriptions",
            {"customerReferenceId": "cus_1", "planId": str(basic.pk)},
            format="json",
        )
        sub_id = created.json()["id"]

        async def preview(client: Client) -> Any:
            return await client.call_tool(
                "changeSubscriptionPlan",
                {"subscriptionId": sub_id, "newPlanId": "pro", "timing": "now"},
            )

        result = _data(in_process(tenant.sk_test, preview))
        assert result["preview"] is True
        assert result["after"]["planKey"] == "pro"
        invoice = result["proration"]["invoice"]
        assert invoice is not None and invoice["totalMinor"] > 0
        assert len(invoice["lines"]) == 2
        sub = Subscription.objects.select_related("plan").get(pk=sub_id)
        assert sub.plan.key == "basic"
        assert not SubscriptionChange.objects.filter(subscription_id=sub_id).exists()


class TestIngestion:
    def test_ingest_defaults_occurred_at_and_a_retry_is_stored_once(self, tenant: Tenant) -> None:
        args = {
            "eventIdempotencyKey": "evt-1",
            "eventName": "llm.call",
            "customerReferenceId": "cus_1",
            "featureKey": "chat",
            "costAmount": "0.05",
        }

        async def body(client: Client) -> Any:
            first = await client.call_tool("ingestEvent", args)
            again = await client.call_tool("ingestEvent", args)
            keyed = await client.call_tool("ingestEvent", {**args, "idempotencyKey": "k1"})
            replay = await client.call_tool("ingestEvent", {**args, "idempotencyKey": "k1"})
            other = await client.call_tool(
                "ingestEvent", {**args, "eventIdempotencyKey": "evt-2", "idempotencyKey": "k1"}
            )
            return first, again, keyed, replay, other

        first, again, keyed, replay, other = in_process(tenant.sk_test, body)
        assert not first.is_error, first
        assert _data(first)["costAmount"] == "0.05"
        assert again.is_error and _data(again)["error"]["code"] == "duplicate_event"
        assert _data(keyed)["error"]["code"] == "duplicate_event"
        assert _data(replay) == _data(keyed)  # the first answer with k1, replayed
        assert _data(other)["error"]["code"] == "idempotency_conflict"
        assert Event.objects.filter(environment=tenant.test).count() == 1
        event = Event.objects.get(environment=tenant.test)
        assert abs(event.occurred_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)

    def test_every_call_is_an_audit_row(self, tenant: Tenant) -> None:
        async def body(client: Client) -> Any:
            await client.call_tool("getMarginSummary", {})
            await client.call_tool("getTrace", {"traceId": "nope"})

        in_process(tenant.sk_test, body)
        rows = list(AuditEntry.objects.filter(action="mcp.tool_call").order_by("created_at"))
        assert [(r.target_id, r.detail["outcome"]) for r in rows] == [
            ("getMarginSummary", "ok"),
            ("getTrace", "error:not_found"),
        ]
        assert all(r.actor_key_id and len(r.detail["argumentsHash"]) == 64 for r in rows)


class TestStatelessAndIsolated:
    def test_calls_keep_working_across_a_server_restart(
        self, tenant: Tenant, asgi_server: AsgiServer
    ) -> None:
        _events(tenant)

        async def main() -> tuple[str, str]:
            async with http_client(tenant.sk_test) as http:
                from mcp.client.streamable_http import streamable_http_client

                transport = streamable_http_client(f"{asgi_server.url}/mcp", http_client=http)
                async with Client(transport, cache=None) as client:
                    before = _data(await client.call_tool("getMarginSummary", {}))["cost"]
                    await anyio.to_thread.run_sync(asgi_server.stop)
                    await anyio.to_thread.run_sync(asgi_server.start)
                    after = _data(await client.call_tool("getMarginSummary", {}))["cost"]
                    return before, after

        assert anyio.run(main) == ("0.3075", "0.3075")

    def test_a_client_of_the_older_handshake_revision_works_too(
        self, tenant: Tenant, asgi_server: AsgiServer
    ) -> None:
        _events(tenant)

        async def main() -> str:
            async with http_client(tenant.sk_test) as http:
                from mcp.client.streamable_http import streamable_http_client

                transport = streamable_http_client(f"{asgi_server.url}/mcp", http_client=http)
                async with Client(transport, cache=None, mode="legacy") as client:
                    return str(_data(await client.call_tool("getMarginSummary", {}))["cost"])

        assert anyio.run(main) == "0.3075"

    def test_other_environment_and_organization_see_nothing(
        self, tenant: Tenant, asgi_server: AsgiServer
    ) -> None:
        _events(tenant)
        outsider = make_tenant("Outsider Inc")

        async def body(client: Client) -> Any:
            summary = _data(await client.call_tool("getMarginSummary", {}))
            customer = await client.call_tool(
                "getCustomerProfitability", {"customerReferenceId": "cus_a"}
            )
            events = _data(await client.call_tool("queryEvents", {}))
            return summary, customer, events

        for key in (tenant.sk_live, outsider.sk_test):
            summary, customer, events = over_http(asgi_server, key, body)
            assert summary["events"] == 0 and summary["cost"] == "0"
            assert customer.is_error and _data(customer)["error"]["code"] == "not_found"
            assert events["items"] == []


class TestRateLimit:
    def test_tool_calls_count_against_the_keys_rate_limit(
        self, tenant: Tenant, settings: Any
    ) -> None:
        settings.API_RATE_LIMIT_PER_SECOND = 1

        async def body(client: Client) -> list[Any]:
            return [await client.call_tool("getMyBudget", {}) for _ in range(5)]

        results = in_process(tenant.sk_test, body)
        codes = [_data(r).get("error", {}).get("code") for r in results]
        assert None in codes and "rate_limited" in codes
        refused = next(r for r in results if r.is_error)
        assert _data(refused)["error"]["code"] == "rate_limited"
        assert _data(refused)["error"]["retryAfter"] >= 1
