"""Recommendations: the ranked findings, computing them, and the operator's decisions.
Same views and renderings as ``GET /api/recommendations``, ``POST
/api/recommendations/compute`` and ``POST /api/recommendations/{id}/dismiss|snooze``
(apps/recommendations/api.py)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from apps.apikeys import scopes as S
from apps.mcp.calls import ToolAnswer, call_view, tool
from apps.mcp.registry import ToolSpec
from apps.recommendations import api as recommendations_api

RecommendationId = Annotated[str, Field(description="The finding's id (stable across recomputes).")]


def _line(item: dict[str, Any]) -> str:
    return (
        f"- ${item['moneyAtStakeMonthly']}/month ({item['direction']}, "
        f"{item['confidence']} confidence) {item['title']} [{item['status']}, id {item['id']}]"
    )


@tool(ToolSpec("listRecommendations", "Recommendations by money at stake", S.RECOMMENDATIONS_READ))
def list_recommendations(
    *,
    status: Annotated[
        str | None,
        Field(description="open (default), snoozed, dismissed, applied, resolved or all."),
    ] = None,
    kind: Annotated[
        str | None,
        Field(description="customer_margin, feature_margin, cheaper_model or unpriced_model."),
    ] = None,
    limit: Annotated[int | None, Field(description="Rows per page, 1-200 (default 50).")] = None,
    cursor: Annotated[str | None, Field(description="nextCursor of the previous page.")] = None,
) -> ToolAnswer:
    """Findings ranked by money at stake per month (USD), each with its evidence,
    assumptions and action (a simulation request body, or a price override body)."""
    page = call_view(
        recommendations_api.RecommendationList,
        "get",
        query={"status": status, "kind": kind, "limit": limit, "cursor": cursor},
    )
    lines = [f"{len(page['items'])} findings"] + [_line(item) for item in page["items"][:20]]
    if page["hasMore"]:
        lines.append("More rows: pass nextCursor as cursor.")
    return ToolAnswer(page, "\n".join(lines), "/dashboard/recommendations/")


@tool(
    ToolSpec(
        "computeRecommendations",
        "Compute the recommendations now",
        S.RECOMMENDATIONS_READ,
        kind="write",
        idempotent=True,
    )
)
def compute_recommendations(
    *,
    windowDays: Annotated[
        int | None, Field(description="The last N days, 1-400 (default 30).")
    ] = None,
) -> ToolAnswer:
    """Recompute the findings over the window (at once for a small environment, else a
    background run whose id and progress the answer gives)."""
    data = {} if windowDays is None else {"windowDays": windowDays}
    run = call_view(recommendations_api.RecommendationCompute, "post", data=data)
    text = (
        f"Run {run['id']}: {run['status']} ({run['stepsDone']}/{run['stepsTotal']} steps); "
        f"{run['findings']} open findings, ${run['moneyAtStakeMonthly']}/month at stake."
    )
    return ToolAnswer(run, text, "/dashboard/recommendations/")


@tool(
    ToolSpec(
        "dismissRecommendation", "Dismiss a recommendation", S.RECOMMENDATIONS_WRITE, kind="write"
    )
)
def dismiss_recommendation(*, recommendationId: RecommendationId) -> ToolAnswer:
    """Dismiss a finding: it stays dismissed until its money at stake doubles."""
    item = call_view(
        recommendations_api.RecommendationDismiss,
        "post",
        data={},
        recommendation_id=recommendationId,
    )
    return ToolAnswer(item, _line(item), "/dashboard/recommendations/")
