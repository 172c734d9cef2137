"""The MCP tools answer what the REST API answers, for the key's environment only."""

from __future__ import annotations

from typing import Any

import pytest

from apps.apikeys import scopes as S
from tests.factories import make_key
from tests.mcp.conftest import in_process

from .conftest import LIST, spend

pytestmark = pytest.mark.django_db(transaction=True)


def _data(result: Any) -> dict[str, Any]:
    assert result.structured_content is not None, result
    return {k: v for k, v in result.structured_content.items() if k != "dashboardUrl"}


def test_compute_list_and_dismiss_equal_the_rest_answers(tenant, outsider, catalog):
    spend(tenant.api(), "cus_low", "chat", cost="90", revenue="100")

    async def body(client: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        run = _data(await client.call_tool("computeRecommendations", {}))
        listed = _data(await client.call_tool("listRecommendations", {}))
        return run, listed

    run, listed = in_process(tenant.sk_test, body)
    assert run["status"] == "succeeded" and run["findings"] == 2
    assert listed == tenant.api().get(LIST).json()
    assert [item["moneyAtStakeMonthly"] for item in listed["items"]] == ["60.00", "60.00"]
    first = listed["items"][0]["id"]

    async def dismiss(client: Any) -> dict[str, Any]:
        return _data(await client.call_tool("dismissRecommendation", {"recommendationId": first}))

    assert in_process(tenant.sk_test, dismiss)["status"] == "dismissed"

    # Another organization sees none of it, and cannot dismiss it.
    async def outside(client: Any) -> tuple[dict[str, Any], Any]:
        listed = _data(await client.call_tool("listRecommendations", {"status": "all"}))
        refused = await client.call_tool("dismissRecommendation", {"recommendationId": first})
        return listed, refused

    seen, refused = in_process(outsider.sk_test, outside)
    assert seen["items"] == [] and refused.is_error


def test_the_tools_follow_the_scopes(tenant, catalog):
    reader = make_key(tenant.test, "obs", scopes=[S.RECOMMENDATIONS_READ]).plaintext

    async def names(client: Any) -> set[str]:
        return {tool.name for tool in (await client.list_tools()).tools}

    visible = in_process(reader, names)
    assert {"listRecommendations", "computeRecommendations"} <= visible
    assert "dismissRecommendation" not in visible
