from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from .models import Membership


def tenant(request: HttpRequest) -> dict[str, Any]:
    membership = getattr(request, "membership", None)
    if membership is None:
        return {}
    assert request.user.is_authenticated  # TenantMiddleware sets a membership for them only
    return {
        "current_membership": membership,
        "current_organization": membership.organization,
        "current_environment": request.environment,  # type: ignore[attr-defined]
        "all_memberships": Membership.objects.select_related("organization")
        .filter(user=request.user)
        .order_by("organization__name"),
    }
