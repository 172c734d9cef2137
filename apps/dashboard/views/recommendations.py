"""Recommendations: the findings ranked by money at stake, each with its evidence,
assumptions and buttons (Simulate, Dismiss, Snooze, Apply); Compute now.

Everyone reads; deciding and computing need the member role (as API keys need
``recommendations.write``). Writes go through the apps.recommendations services.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.accounts.models import Role
from apps.core.errors import TansoError
from apps.dashboard.decorators import tenant_view
from apps.recommendations.models import Recommendation
from apps.recommendations.selectors import (
    STATUS_FILTERS,
    effective_status,
    recommendation_get,
    recommendations_page,
    recommendations_ranked,
)
from apps.recommendations.services import (
    recommendation_apply,
    recommendation_dismiss,
    recommendation_reopen,
    recommendation_snooze,
    recommendations_compute,
)

PAGE_SIZE = 100
SNOOZE_DAYS = 7
_DECISIONS = {
    "dismiss": recommendation_dismiss,
    "apply": recommendation_apply,
    "reopen": recommendation_reopen,
}


def _simulate_url(action: dict[str, Any]) -> str | None:
    """The simulations page prefilled with the action's request, when that page exists."""
    if action.get("type") != "simulate":
        return None
    try:
        base = reverse("dashboard:simulation_new")
    except NoReverseMatch:
        return None
    return f"{base}?{urlencode({'request': json.dumps(action['request'])})}"


def _card(row: Recommendation, now: dt.datetime) -> dict[str, Any]:
    return {
        "row": row,
        "status": effective_status(row, now),
        "evidence": sorted(
            (k, v) for k, v in row.evidence.items() if not isinstance(v, dict | list)
        ),
        "contributors": row.evidence.get("topContributors") or [],
        "action_json": json.dumps(row.action, indent=2),
        "simulate_url": _simulate_url(row.action),
    }


@tenant_view()
def recommendations(request: HttpRequest) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    status = request.GET.get("status") or "open"
    if status not in STATUS_FILTERS:
        status = "open"
    now = timezone.now()
    rows = recommendations_ranked(environment, now=now, status=status)
    found = recommendations_page(rows, limit=PAGE_SIZE, cursor=None)
    return render(
        request,
        "dashboard/recommendations/list.html",
        {
            "cards": [_card(row, now) for row in found.items],
            "status": status,
            "statuses": STATUS_FILTERS,
            "has_more": found.has_more,
            "can_manage": request.membership.at_least(Role.MEMBER),  # type: ignore[attr-defined]
            "snooze_days": SNOOZE_DAYS,
        },
    )


@require_POST
@tenant_view(Role.MEMBER)
def recommendation_decide(
    request: HttpRequest, recommendation_id: str, decision: str
) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    row = recommendation_get(environment, recommendation_id)
    try:
        if decision == "snooze":
            until = timezone.now() + dt.timedelta(days=SNOOZE_DAYS)
            recommendation_snooze(recommendation=row, until=until)
        elif decision in _DECISIONS:
            _DECISIONS[decision](recommendation=row)
        else:
            return HttpResponse(status=404)
    except TansoError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{row.title}: {row.get_status_display().lower()}.")
    return redirect("dashboard:recommendations")


@require_POST
@tenant_view(Role.MEMBER)
def recommendations_compute_now(request: HttpRequest) -> HttpResponse:
    result = recommendations_compute(environment=request.environment)  # type: ignore[attr-defined]
    messages.success(
        request,
        f"Computed: {result.open_findings} open findings, "
        f"${result.open_stake:.2f} a month at stake.",
    )
    return redirect("dashboard:recommendations")
