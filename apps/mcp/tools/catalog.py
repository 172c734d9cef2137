"""Catalog reads: plans, features, one customer, the calling key's budget. The same views
as ``GET /api/v1/client/plans``, ``/features``, ``/customers/{id}`` and
``/api/sdk-keys/me``."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from pydantic import Field

from apps.apikeys import api as keys_api
from apps.apikeys import scopes as S
from apps.customers import api as customers_api
from apps.features import api as features_api
from apps.mcp.calls import ToolAnswer, call_view, current_caller, tool
from apps.mcp.registry import ToolSpec
from apps.mcp.tools.pinning import pinned
from apps.plans import api as plans_api

Limit = Annotated[int | None, Field(description="Rows per page, 1-200 (default 50).")]
Cursor = Annotated[str | None, Field(description="nextCursor of the previous page.")]


@tool(ToolSpec("listPlans", "Plans", S.USAGE_READ))
def list_plans(
    *,
    status: Annotated[str | None, Field(description="draft, active or archived.")] = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> ToolAnswer:
    """The plans of this environment, newest first, with price, interval and status."""
    page = call_view(
        plans_api.PlanListCreate,
        "get",
        query={"status": status, "limit": limit, "cursor": cursor},
    )
    lines = [f"{len(page['items'])} plans"]
    lines += [
        f"- {p.get('key')} ({p.get('name')}): {p.get('priceAmount')} {p.get('currency')}, "
        f"{p.get('status')}"
        for p in page["items"][:20]
    ]
    return ToolAnswer(page, "\n".join(lines), "/dashboard/plans/")


@tool(ToolSpec("getPlan", "One plan with its pricing rules", S.USAGE_READ))
def get_plan(*, planId: Annotated[str, Field(description="The plan's id or key.")]) -> ToolAnswer:
    """One plan and its pricing rules per feature."""
    plan = call_view(plans_api.PlanDetail, "get", plan_ref=planId)
    rules = call_view(plans_api.PlanFeatures, "get", plan_ref=planId)
    data = {**plan, "features": rules.get("items", [])}
    text = (
        f"Plan {plan.get('key')} ({plan.get('name')}): {plan.get('priceAmount')} "
        f"{plan.get('currency')}, {plan.get('status')}, {len(data['features'])} feature rules."
    )
    return ToolAnswer(data, text, f"/dashboard/plans/{plan.get('id')}/")


@tool(ToolSpec("listFeatures", "Features", S.USAGE_READ))
def list_features(*, limit: Limit = None, cursor: Cursor = None) -> ToolAnswer:
    """The product features of this environment (featureKey, name, unit)."""
    page = call_view(
        features_api.FeatureListCreate, "get", query={"limit": limit, "cursor": cursor}
    )
    lines = [f"{len(page['items'])} features"]
    lines += [f"- {f.get('featureKey')}: {f.get('name')}" for f in page["items"][:30]]
    return ToolAnswer(page, "\n".join(lines), "/dashboard/features/")


@tool(ToolSpec("getFeature", "One feature", S.USAGE_READ))
def get_feature(*, featureKey: str) -> ToolAnswer:
    """One feature by its key."""
    data = call_view(features_api.FeatureDetail, "get", feature_key=featureKey)
    return ToolAnswer(data, f"Feature {featureKey}: {data.get('name')}", "/dashboard/features/")


@tool(ToolSpec("getCustomer", "One customer", S.CUSTOMERS_READ, customer_scope=S.CUSTOMER_READ))
def get_customer(
    *,
    customerReferenceId: Annotated[
        str | None, Field(description="Required, except with a customer key (its own).")
    ] = None,
) -> ToolAnswer:
    """One customer's record: reference id, email, names, metadata."""
    reference = pinned(customerReferenceId)
    data = call_view(customers_api.CustomerDetail, "get", reference_id=reference)
    text = f"Customer {reference}: {data.get('email') or 'no email'}"
    return ToolAnswer(data, text, f"/dashboard/customers/{quote(reference, safe='')}")


@tool(ToolSpec("getMyBudget", "The calling key's scopes and budget", None, S.CUSTOMER_READ))
def get_my_budget() -> ToolAnswer:
    """The calling key: its kind, scopes, budget (USD per day, month or lifetime), what
    it has spent in the current budget window and its expiry."""
    data = call_view(keys_api.SdkKeyMe, "get")
    key = current_caller().key
    budget = data.get("budget")
    text = (
        f"Key {key.prefix}…{key.hint} ({key.kind}): scopes {', '.join(data.get('scopes', []))}"
        + (f"; budget {budget}" if budget is not None else "; no budget")
    )
    return ToolAnswer(data, text, "/dashboard/")
