"""allauth hooks: after login, users without an organization go to onboarding; client
IPs as settings.TRUST_X_FORWARDED_FOR says; failed logins limited per account and
address together, answered with 429."""

from __future__ import annotations

import math
import time
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.internal import ratelimit
from django import forms
from django.core.cache import cache
from django.http import HttpRequest
from django.urls import reverse

from apps.core.errors import is_outage
from apps.core.middleware import client_ip

from .models import Membership

_APP = "allauth.account"
_ACTION = "login_failed"


def login_retry_after(request: HttpRequest) -> int | None:
    """Seconds until a lockout set by ``AccountAdapter.pre_authenticate`` lifts, if any."""
    return getattr(request, "_tanso_login_retry_after", None)


class AccountAdapter(DefaultAccountAdapter):
    def get_login_redirect_url(self, request: HttpRequest) -> str:
        assert request.user.is_authenticated  # allauth asks once the user is signed in
        if not Membership.objects.filter(user=request.user).exists():
            return reverse("onboarding:start")
        return super().get_login_redirect_url(request)

    def get_client_ip(self, request: HttpRequest) -> str:
        return client_ip(request)

    def _get_login_attempts_cache_key(self, request: HttpRequest, **credentials: Any) -> str:
        # allauth's "key" of the login_failed limit (ACCOUNT_RATE_LIMITS): the account
        # AND the client address. Keyed on the account alone, anyone could lock its
        # owner out by failing five times; this way a lockout holds only where the
        # failures came from. (A private allauth hook: django-allauth is pinned.)
        return (
            f"{super()._get_login_attempts_cache_key(request, **credentials)}:{client_ip(request)}"
        )

    def authenticate(self, request: HttpRequest, **credentials: Any) -> Any:
        try:
            return super().authenticate(request, **credentials)
        except Exception as exc:
            if is_outage(exc):
                # PostgreSQL failed, not the password: the attempt that pre_authenticate
                # counted is given back, so an outage never locks anyone out.
                self._rollback_login_failed_rl_usage()
            raise

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        try:
            super().pre_authenticate(request, **credentials)
        except forms.ValidationError as exc:
            if exc.code != "too_many_login_attempts":
                raise
            wait = self._lockout_seconds(request, **credentials)
            request._tanso_login_retry_after = wait  # type: ignore[attr-defined]
            minutes = max(1, math.ceil(wait / 60))
            raise forms.ValidationError(
                f"Too many failed sign-in attempts. Try again in {minutes} "
                f"minute{'s' if minutes != 1 else ''}, or reset your password.",
                code="too_many_login_attempts",
            ) from None

    def _lockout_seconds(self, request: HttpRequest, **credentials: Any) -> int:
        """Until the oldest counted failure of each full login_failed rate leaves it."""
        key = self._get_login_attempts_cache_key(request, **credentials)
        now = time.time()
        waits = [1]
        for rate in ratelimit.get_rates(app=_APP, action=_ACTION):
            cache_key = ratelimit.get_cache_key(
                request, app=_APP, action=_ACTION, rate=rate, key=key
            )
            history = [ts for ts in cache.get(cache_key, []) if ts > now - rate.duration]
            if len(history) >= rate.amount:
                waits.append(math.ceil(min(history) + rate.duration - now))
        return max(waits)
