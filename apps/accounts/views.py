"""Invitation links: sign in (or up) with the invited address, then accept; allauth's
login page, answering a lockout with 429; and "send the verification link again"."""

from __future__ import annotations

from typing import Any

from allauth.account.internal.flows.email_verification import (
    handle_verification_email_rate_limit,
)
from allauth.account.models import EmailAddress
from allauth.account.views import LoginView as AllauthLoginView
from django import forms
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.core.errors import TansoError

from .adapters import login_retry_after
from .audit import Actor
from .middleware import SESSION_ENV, SESSION_ORG
from .services import invitation_accept, invitation_for_token


def accept_invitation(request: HttpRequest, token: str) -> HttpResponse:
    invitation = invitation_for_token(token)
    if invitation is None:
        return render(request, "accounts/invitation_invalid.html", status=404)
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if request.method == "POST":
        try:
            membership = invitation_accept(
                token=token,
                user=request.user,
                actor=Actor.from_request(request),
            )
        except TansoError as exc:
            messages.error(request, exc.message)
            return render(
                request, "accounts/invitation.html", {"invitation": invitation}, status=exc.status
            )
        request.session[SESSION_ORG] = str(membership.organization_id)
        request.session[SESSION_ENV] = "test"
        messages.success(request, f"Welcome to {membership.organization.name}.")
        return redirect("dashboard:home")
    return render(request, "accounts/invitation.html", {"invitation": invitation})


class LoginView(AllauthLoginView):
    """allauth's login page; a lockout (too many failed logins for this account from
    this address) is the form with its message, status 429 and ``Retry-After``."""

    def form_invalid(self, form: Any) -> HttpResponse:
        response = super().form_invalid(form)
        wait = login_retry_after(self.request)
        if wait is not None:
            response.status_code = 429
            response["Retry-After"] = str(wait)
        return response


login = LoginView.as_view()


class ResendVerificationForm(forms.Form):
    email = forms.EmailField(label="Email address")


@require_POST
def resend_verification(request: HttpRequest) -> HttpResponse:
    """Send the verification link again to an address that signed up and is not yet
    verified. The answer is the same whether or not it did (no address is revealed);
    allauth's ``confirm_email`` limit (one email per address every 3 minutes) holds, and
    an earlier link keeps working. (An allauth internal: django-allauth is pinned.)"""
    form = ResendVerificationForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Enter the email address you signed up with.")
        return redirect("account_email_verification_sent")
    email = form.cleaned_data["email"]
    address = (
        EmailAddress.objects.select_related("user")
        .filter(email__iexact=email, verified=False)
        .first()
    )
    if address is not None and handle_verification_email_rate_limit(request, address.email):
        address.send_confirmation(request, signup=False)
    messages.info(
        request,
        f"If {email} is waiting for verification, a new link is on its way. "
        "One link is sent per address every 3 minutes; earlier links keep working.",
    )
    return redirect("account_email_verification_sent")
