"""The dashboard shell: environment and organization switches, members,
API keys, the audit log and settings (the home page is the Observe overview).
Views call the same services as the API."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import cast

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.accounts.audit import Actor
from apps.accounts.middleware import SESSION_ENV, SESSION_ORG
from apps.accounts.models import Environment, Invitation, Membership, Role, User
from apps.accounts.selectors import audit_log_of, members_of, open_invitations_of
from apps.accounts.services import (
    invitation_create,
    invitation_revoke,
    membership_change_role,
    membership_remove,
    organization_update,
)
from apps.apikeys.models import ApiKey
from apps.apikeys.selectors import apikey_get, apikeys_for
from apps.apikeys.services import apikey_create, apikey_revoke, apikey_rotate
from apps.core.errors import TansoError
from apps.core.tenancy import get_org_scoped_or_404, get_scoped_or_404, scoped_to_org
from apps.customers.models import Customer
from apps.dashboard.confirm import Confirmation, needs_confirmation
from apps.dashboard.decorators import tenant_view
from apps.dashboard.forms import ApiKeyForm, InviteForm, OrganizationForm, RoleForm


def _ok_next(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next", "")
    return target if target.startswith("/") and not target.startswith("//") else fallback


@require_POST
@tenant_view()
def switch_environment(request: HttpRequest) -> HttpResponse:
    kind = request.POST.get("env")
    if kind in Environment.Kind.values:
        request.session[SESSION_ENV] = kind
    return redirect(_ok_next(request, "/dashboard/"))


@require_POST
@tenant_view()
def switch_organization(request: HttpRequest) -> HttpResponse:
    try:
        organization_id = uuid.UUID(request.POST.get("org") or "")
    except ValueError:
        # A malformed id is no organization of the user's (not a 500).
        return redirect("dashboard:home")
    user = cast("User", request.user)  # tenant_view: signed in
    membership = scoped_to_org(Membership, organization_id).filter(user=user).first()
    if membership is not None:
        request.session[SESSION_ORG] = str(membership.organization_id)
        request.session[SESSION_ENV] = Environment.Kind.TEST
    return redirect("dashboard:home")


# --- Members -------------------------------------------------------------------------


@tenant_view()
def members(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    return render(
        request,
        "dashboard/members.html",
        {
            "members": members_of(organization),
            "invitations": open_invitations_of(organization),
            "invite_form": InviteForm(),
            "roles": Role.choices,
            "can_manage": request.membership.at_least(Role.ADMIN),  # type: ignore[attr-defined]
        },
    )


@require_POST
@tenant_view(Role.ADMIN)
def member_invite(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            invitation_create(
                organization=request.organization,  # type: ignore[attr-defined]
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                actor=Actor.from_request(request),
            )
            messages.success(request, f"Invitation sent to {form.cleaned_data['email']}.")
        except TansoError as exc:
            messages.error(request, exc.message)
    else:
        messages.error(request, "Enter a valid email address and role.")
    return redirect("dashboard:members")


@require_POST
@tenant_view(Role.ADMIN)
def member_role(request: HttpRequest, membership_id: str) -> HttpResponse:
    membership = get_org_scoped_or_404(
        Membership.objects.select_related("user", "organization"),
        request.organization,  # type: ignore[attr-defined]
        pk=membership_id,
    )
    form = RoleForm(request.POST)
    if form.is_valid():
        if form.cleaned_data["role"] == Role.OWNER and not request.membership.at_least(Role.OWNER):  # type: ignore[attr-defined]
            messages.error(request, "Only an owner can make someone an owner.")
        else:
            try:
                membership_change_role(
                    membership=membership,
                    role=form.cleaned_data["role"],
                    actor=Actor.from_request(request),
                )
                messages.success(request, f"{membership.user.email} is now {membership.role}.")
            except TansoError as exc:
                messages.error(request, exc.message)
    return redirect("dashboard:members")


@require_POST
@tenant_view(Role.ADMIN)
def member_remove(request: HttpRequest, membership_id: str) -> HttpResponse:
    membership = get_org_scoped_or_404(
        Membership.objects.select_related("user", "organization"),
        request.organization,  # type: ignore[attr-defined]
        pk=membership_id,
    )
    asked = needs_confirmation(
        request,
        Confirmation(
            title=f"Remove {membership.user.email}?",
            consequence=(
                f"{membership.user.email} loses access to {membership.organization.name} at once: "
                "the dashboard and everything in it. To let them back, invite them again."
            ),
            label="Remove member",
            back_url=reverse("dashboard:members"),
        ),
    )
    if asked is not None:
        return asked
    try:
        membership_remove(membership=membership, actor=Actor.from_request(request))
        messages.success(request, f"{membership.user.email} was removed.")
    except TansoError as exc:
        messages.error(request, exc.message)
    return redirect("dashboard:members")


@require_POST
@tenant_view(Role.ADMIN)
def invitation_cancel(request: HttpRequest, invitation_id: str) -> HttpResponse:
    invitation = get_org_scoped_or_404(
        Invitation.objects.select_related("organization"),
        request.organization,  # type: ignore[attr-defined]
        pk=invitation_id,
    )
    invitation_revoke(invitation=invitation, actor=Actor.from_request(request))
    messages.success(request, f"Invitation to {invitation.email} revoked.")
    return redirect("dashboard:members")


# --- API keys --------------------------------------------------------------------------


# The key service's field names (the API's) -> the key form's fields.
_KEY_FORM_FIELD = {
    "kind": "kind",
    "scopes": "scopes",
    "customerReferenceId": "customer_reference_id",
    "budget_cents": "budget_dollars",
    "budget_period": "budget_period",
    "expiresAt": "expires_in_days",
}


def _keys_page(
    request: HttpRequest, form: ApiKeyForm, new_key: str | None = None, status: int = 200
) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    paginator = Paginator(apikeys_for(environment).order_by("-created_at"), 50)
    page = paginator.get_page(request.GET.get("page"))
    return render(
        request,
        "dashboard/keys.html",
        {
            "keys": page,
            "form": form,
            "new_key": new_key,
            "can_manage": request.membership.at_least(Role.MEMBER),  # type: ignore[attr-defined]
        },
        status=status,
    )


@tenant_view()
def keys(request: HttpRequest) -> HttpResponse:
    return _keys_page(request, ApiKeyForm())


@require_POST
@tenant_view(Role.MEMBER)
def key_create(request: HttpRequest) -> HttpResponse:
    """Create a key and show its secret in this response only (never stored)."""
    environment = request.environment  # type: ignore[attr-defined]
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _keys_page(request, form, status=400)
    data = form.cleaned_data
    customer = None
    if data["kind"] == ApiKey.Kind.CUSTOMER:
        customer = (
            Customer.objects.for_env(environment)
            .filter(reference_id=data["customer_reference_id"])
            .first()
        )
        if customer is None and data["customer_reference_id"]:
            form.add_error("customer_reference_id", "No customer has this reference.")
            return _keys_page(request, form, status=400)
    budget = data.get("budget_dollars")
    try:
        with transaction.atomic():
            issued = apikey_create(
                environment=environment,
                kind=data["kind"],
                actor=Actor.from_request(request),
                name=data["name"],
                scopes=data["scopes"] or None,
                customer=customer,
                budget_cents=int(budget * 100) if budget is not None else None,
                budget_period=data["budget_period"] or None,
                expires_at=(
                    timezone.now() + dt.timedelta(days=data["expires_in_days"])
                    if data.get("expires_in_days")
                    else None
                ),
            )
    except TansoError as exc:
        # The service names the API's fields; the form shows its own labels.
        for field, errors in (exc.fields or {"__all__": [exc.message]}).items():
            name = _KEY_FORM_FIELD.get(field)
            for error in errors:
                if name in form.fields:
                    form.add_error(name, error)
                else:
                    form.add_error(None, error)
        return _keys_page(request, form, status=400)
    response = _keys_page(request, ApiKeyForm(), new_key=issued.plaintext, status=201)
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@tenant_view(Role.MEMBER)
def key_rotate(request: HttpRequest, key_id: str) -> HttpResponse:
    key = apikey_get(request.environment, key_id)  # type: ignore[attr-defined]
    try:
        issued = apikey_rotate(key=key, actor=Actor.from_request(request))
    except TansoError as exc:
        messages.error(request, exc.message)
        return redirect("dashboard:keys")
    response = _keys_page(request, ApiKeyForm(), new_key=issued.plaintext, status=201)
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@tenant_view(Role.MEMBER)
def key_revoke(request: HttpRequest, key_id: str) -> HttpResponse:
    key = get_scoped_or_404(
        ApiKey.objects.select_related("environment__organization"),
        request.environment,  # type: ignore[attr-defined]
        pk=key_id,
    )
    asked = needs_confirmation(
        request,
        Confirmation(
            title=f"Revoke key {key.prefix}…{key.hint}?",
            consequence=(
                "Every request made with this key is refused from now on (401): whatever uses "
                "it stops working until it gets another key. A revoked key cannot be restored."
            ),
            label="Revoke key",
            back_url=reverse("dashboard:keys"),
            details=[("Name", key.name or "—")],
        ),
    )
    if asked is not None:
        return asked
    apikey_revoke(key=key, actor=Actor.from_request(request))
    messages.success(request, f"Key {key.prefix}…{key.hint} revoked.")
    return redirect("dashboard:keys")


# --- Audit log --------------------------------------------------------------------------


@tenant_view(Role.ADMIN)
def audit(request: HttpRequest) -> HttpResponse:
    """The organization's audit log, newest first; ``?action=`` keeps the actions that
    start with it (``plan.``), ``?target=`` one target's entries."""
    entries = audit_log_of(request.organization).order_by("-created_at", "-id")  # type: ignore[attr-defined]
    action = (request.GET.get("action") or "").replace("\x00", "").strip()[:40]
    target = (request.GET.get("target") or "").replace("\x00", "").strip()[:64]
    if action:
        entries = entries.filter(action__startswith=action)
    if target:
        entries = entries.filter(target_id=target)
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    params = {"action": action, "target": target}
    context = {"entries": page, "action": action, "target": target, "params": params}
    return render(request, "dashboard/audit.html", context)


# --- Organization settings ----------------------------------------------------------------


@tenant_view()
def organization_settings(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    can_manage = request.membership.at_least(Role.ADMIN)  # type: ignore[attr-defined]
    form = OrganizationForm(
        request.POST or None, initial={"name": organization.name, "mode": organization.mode}
    )
    if request.method == "POST":
        if not can_manage:
            raise PermissionDenied("Only owners and admins change settings.")
        if form.is_valid():
            organization_update(
                organization=organization,
                actor=Actor.from_request(request),
                name=form.cleaned_data["name"],
                mode=form.cleaned_data["mode"],
            )
            messages.success(request, "Settings saved.")
            return redirect("dashboard:settings")
    return render(
        request,
        "dashboard/settings.html",
        {"form": form, "can_manage": can_manage},
        status=400 if form.errors else 200,
    )
