"""Entitlement checks: "may this customer use this feature now?", as
``POST /api/v1/client/entitlements/check`` and ``GET /api/v1/client/entitlements/{id}``.
A check fails closed: when it cannot be decided the answer is ``allowed: false``."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from pydantic import Field

from apps.apikeys import scopes as S
from apps.entitlements import api as entitlements_api
from apps.mcp.calls import ToolAnswer, call_view, tool
from apps.mcp.registry import ToolSpec
from apps.mcp.tools.pinning import pinned

Reference = Annotated[
    str | None, Field(description="The customer; a customer key may leave it out (its own).")
]


@tool(ToolSpec("checkEntitlement", "Check an entitlement", S.USAGE_READ, S.CUSTOMER_READ))
def check_entitlement(
    *,
    featureKey: str,
    customerReferenceId: Reference = None,
    units: Annotated[
        str | None, Field(description="Units the customer is about to use (default 1).")
    ] = None,
    model: Annotated[str | None, Field(description="The model, for credit weights.")] = None,
) -> ToolAnswer:
    """May the customer use the feature now (for `units`)? `allowed`, the reason when
    not, usage used/limit/remaining and when it resets, and the credit balance. Reads
    only: it reserves nothing."""
    reference = pinned(customerReferenceId)
    body: dict[str, Any] = {"customerReferenceId": reference, "featureKey": featureKey}
    if units is not None:
        body["units"] = units
    if model is not None:
        body["model"] = model
    data = call_view(entitlements_api.EntitlementCheck, "post", data=body)
    verdict = "allowed" if data.get("allowed") else "NOT allowed"
    reason = data.get("reason")
    text = f"{reference} / {featureKey}: {verdict}" + (f" ({reason})" if reason else "")
    return ToolAnswer(data, text, f"/dashboard/customers/{quote(reference, safe='')}")


@tool(
    ToolSpec("listCustomerEntitlements", "A customer's entitlements", S.USAGE_READ, S.CUSTOMER_READ)
)
def list_customer_entitlements(*, customerReferenceId: Reference = None) -> ToolAnswer:
    """Every feature of the customer's plan with its usage, limit and whether it may be
    used now."""
    reference = pinned(customerReferenceId)
    data = call_view(entitlements_api.CustomerEntitlements, "get", reference_id=reference)
    items = data.get("items") or data.get("entitlements") or []
    lines = [f"{reference}: {len(items)} entitlements"]
    lines += [
        f"- {item.get('featureKey')}: {'allowed' if item.get('allowed') else 'not allowed'}"
        for item in items[:30]
    ]
    return ToolAnswer(data, "\n".join(lines), f"/dashboard/customers/{quote(reference, safe='')}")
