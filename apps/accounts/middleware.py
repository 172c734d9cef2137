"""Dashboard tenancy: the signed-in user's current organization and environment.

The choice lives in the session (``org_id``, ``env_kind``) and is checked
against the user's memberships on every request; a stale or foreign choice
falls back to the user's first organization and its test environment.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from apps.core.tenancy import scoped_to_org

from .models import Environment, Membership

SESSION_ORG = "org_id"
SESSION_ENV = "env_kind"


class TenantMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.membership = None  # type: ignore[attr-defined]
        request.organization = None  # type: ignore[attr-defined]
        request.environment = None  # type: ignore[attr-defined]
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not request.path.startswith("/api/"):
            self._resolve(request)
        return self.get_response(request)

    @staticmethod
    def _resolve(request: HttpRequest) -> None:
        assert request.user.is_authenticated  # __call__ resolves signed-in users only
        memberships = Membership.objects.select_related("organization").filter(user=request.user)
        wanted = request.session.get(SESSION_ORG)
        membership = None
        if wanted:
            membership = scoped_to_org(memberships, wanted).first()
        if membership is None:
            membership = memberships.order_by("created_at").first()
        if membership is None:
            return
        kind = request.session.get(SESSION_ENV, Environment.Kind.TEST)
        if kind not in Environment.Kind.values:
            kind = Environment.Kind.TEST
        environment = scoped_to_org(
            Environment.objects.select_related("organization"), membership.organization
        ).get(kind=kind)
        request.membership = membership  # type: ignore[attr-defined]
        request.organization = membership.organization  # type: ignore[attr-defined]
        request.environment = environment  # type: ignore[attr-defined]
