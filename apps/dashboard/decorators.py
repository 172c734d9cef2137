"""Every dashboard view states the least role it needs; tenancy comes from the request."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect

from apps.accounts.models import Role
from apps.analytics import selectors as analytics


def tenant_view(
    min_role: str = Role.VIEWER,
) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    def decorator(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @login_required
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            membership = getattr(request, "membership", None)
            if membership is None:
                return redirect("onboarding:start")
            if not membership.at_least(min_role):
                raise PermissionDenied(f"This needs the {min_role} role.")
            with analytics.one_read():  # a page reads each window's invoices once
                return view(request, *args, **kwargs)

        return wrapper

    return decorator
