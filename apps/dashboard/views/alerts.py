"""Alerts pages: the inbox of fired alerts (unacknowledged first, filters, acknowledge),
with the environment's rules and webhook endpoints beside it. The same selectors and
services as the API (apps/alerts)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.models import Role
from apps.alerts import selectors, services
from apps.alerts.models import Severity
from apps.dashboard.decorators import tenant_view

INBOX_ROWS = 100


@tenant_view()
def inbox(request: HttpRequest) -> HttpResponse:
    env = request.environment  # type: ignore[attr-defined]
    services.defaults_ensure(environment=env)
    show_all = request.GET.get("show") == "all"
    severity = request.GET.get("severity")
    rows = selectors.notifications_of(
        env,
        unacknowledged=not show_all,
        severity=severity if severity in Severity.values else None,
    ).order_by("-created_at")[:INBOX_ROWS]
    return render(
        request,
        "dashboard/alerts/inbox.html",
        {
            "alerts": list(rows),
            "unread": selectors.unread_count(env),
            "show_all": show_all,
            "severity": severity if severity in Severity.values else "",
            "severities": Severity.values,
            "rules": list(selectors.rules_of(env).order_by("name")),
            "endpoints": list(selectors.endpoints_of(env).order_by("created_at")),
            "can_manage": request.membership.at_least(Role.MEMBER),  # type: ignore[attr-defined]
        },
    )


@require_POST
@tenant_view(Role.MEMBER)
def acknowledge(request: HttpRequest, notification_id: str) -> HttpResponse:
    env = request.environment  # type: ignore[attr-defined]
    notification = selectors.notification_get(env, notification_id)
    services.notification_acknowledge(notification=notification, by=request.user.get_username())
    messages.success(request, "Alert acknowledged.")
    return redirect("dashboard:alerts")
