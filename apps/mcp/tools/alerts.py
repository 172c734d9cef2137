"""Alerts for agents: the rules, the fired alerts (the dashboard inbox) and their
acknowledgement. Same views and renderings as ``GET /api/alerts``, ``GET
/api/fired-alerts`` and ``POST /api/fired-alerts/{id}/acknowledge`` (apps/alerts/api.py)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from apps.alerts import api as alerts_api
from apps.apikeys import scopes as S
from apps.mcp.calls import ToolAnswer, call_view, tool
from apps.mcp.registry import ToolSpec

Limit = Annotated[int | None, Field(description="Rows per page, 1-200 (default 50).")]
Cursor = Annotated[str | None, Field(description="nextCursor of the previous page.")]


def _alert_line(item: dict[str, Any]) -> str:
    payload = item["payload"]
    subject = ", ".join(f"{k} {v}" for k, v in payload.get("subject", {}).items())
    return (
        f"- {item['type']} [{item['severity']}] {payload.get('rule', {}).get('name', '')}"
        f"{' for ' + subject if subject else ''}: observed {payload.get('observed')}"
        f" vs threshold {payload.get('threshold')}"
        f"{'' if item['acknowledgedAt'] is None else ' (acknowledged)'} (id {item['id']})"
    )


@tool(ToolSpec("listAlertRules", "Alert rules", S.ALERTS_READ))
def list_alert_rules(*, limit: Limit = None, cursor: Cursor = None) -> ToolAnswer:
    """The environment's alert rules: metric, scope, window, thresholds, channels, enabled."""
    page = call_view(alerts_api.AlertList, "get", query={"limit": limit, "cursor": cursor})
    lines = [f"{len(page['items'])} alert rules"]
    lines += [
        f"- {r['name']}: {r['metric']} per {r['scope']} over {r['window']} {r['operator']} "
        + ", ".join(t["value"] for t in r["thresholds"])
        + ("" if r["enabled"] else " (off)")
        for r in page["items"]
    ]
    return ToolAnswer(page, "\n".join(lines), "/dashboard/")


@tool(ToolSpec("listFiredAlerts", "Fired alerts", S.ALERTS_READ))
def list_fired_alerts(
    *,
    unacknowledged: Annotated[
        bool | None, Field(description="Only those not acknowledged yet.")
    ] = None,
    type: Annotated[str | None, Field(description="alert.triggered or alert.resolved")] = None,
    severity: Annotated[str | None, Field(description="info, warning or critical")] = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> ToolAnswer:
    """Fired alerts, newest first, with their message (the money at stake included)."""
    page = call_view(
        alerts_api.FiredAlertList,
        "get",
        query={
            "unacknowledged": unacknowledged,
            "type": type,
            "severity": severity,
            "limit": limit,
            "cursor": cursor,
        },
    )
    lines = [f"{len(page['items'])} fired alerts"] + [_alert_line(i) for i in page["items"]]
    return ToolAnswer(page, "\n".join(lines), "/dashboard/")


@tool(ToolSpec("acknowledgeAlert", "Acknowledge a fired alert", S.ALERTS_WRITE, kind="write"))
def acknowledge_alert(
    *, firedAlertId: Annotated[str, Field(description="The fired alert's id.")]
) -> ToolAnswer:
    """Mark a fired alert as acknowledged (it leaves the unacknowledged list; idempotent)."""
    data = call_view(alerts_api.FiredAlertAcknowledge, "post", notification_id=firedAlertId)
    return ToolAnswer(data, "Acknowledged:\n" + _alert_line(data), "/dashboard/")
