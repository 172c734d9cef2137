"""allauth hooks: after login, users without an organization go to onboarding."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.http import HttpRequest
from django.urls import reverse

from .models import Membership


class AccountAdapter(DefaultAccountAdapter):
    def get_login_redirect_url(self, request: HttpRequest) -> str:
        assert request.user.is_authenticated  # allauth asks once the user is signed in
        if not Membership.objects.filter(user=request.user).exists():
            return reverse("onboarding:start")
        return super().get_login_redirect_url(request)
