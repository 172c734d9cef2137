"""API: the organization (name, Observe/Platform), its members and invitations, and
its audit log: what the dashboard's shell pages do, for an ``admin``-scoped key.

These are organization-level actions, so they need the ``admin`` scope (secret keys
hold it; an ``obs_`` key only when it was given it; customer keys never). A key acts
as an admin of the organization, never as an owner: it cannot make anyone an owner,
nor change or remove an owner (403 ``forbidden``); owners do that in the dashboard.
The audit log a key reads is its own environment's entries and the organization's
(members, settings), never the other environment's."""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.apikeys import scopes as S
from apps.apikeys.authentication import request_key
from apps.apikeys.idempotency import APIView
from apps.core.api.pagination import paginate_newest_first
from apps.core.api.schema import PAGE_PARAMETERS, page
from apps.core.errors import Forbidden, InvalidQuery, NotFound
from apps.core.tenancy import get_org_scoped_or_404
from apps.customers.api import StrictCharField

from .audit import Actor
from .models import AuditEntry, Environment, Invitation, Membership, Organization, Role
from .selectors import audit_log_seen_from, members_of, open_invitations_of
from .services import (
    invitation_create,
    invitation_revoke,
    membership_change_role,
    membership_remove,
    organization_update,
)

# A key may hand out these roles (an owner is made by an owner, in the dashboard).
KEY_GRANTABLE_ROLES = [Role.ADMIN, Role.MEMBER, Role.VIEWER]


def _organization(request: Request) -> Organization:
    return request_key(request).environment.organization


def _uuid_or_404(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound() from None


# --- The organization: name and Observe / Platform ---------------------------------------


def render_organization(organization: Organization) -> dict[str, Any]:
    return {
        "id": organization.pk,
        "name": organization.name,
        "slug": organization.slug,
        "mode": organization.mode,
        "createdAt": organization.created_at,
    }


_ORGANIZATION = inline_serializer(
    "AccountsOrganization",
    fields={
        "id": serializers.UUIDField(),
        "name": serializers.CharField(),
        "slug": serializers.CharField(),
        "mode": serializers.ChoiceField(
            choices=Organization.Mode.values,
            help_text="observe: margins only; platform: adds plans, subscriptions, billing",
        ),
        "createdAt": serializers.DateTimeField(),
    },
)


class OrganizationInput(serializers.Serializer):
    # Strict: a JSON number is not a name (DRF's CharField would take 0 as "0").
    name = StrictCharField(max_length=150, required=False)
    mode = serializers.ChoiceField(choices=Organization.Mode.values, required=False)

    def validate_name(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("A name is required.")
        return value


class OrganizationDetail(APIView):
    required_scopes = S.ADMIN

    @extend_schema(
        summary="The key's organization: name and product (Observe or Platform)",
        request=None,
        responses={200: _ORGANIZATION},
    )
    def get(self, request: Request) -> Response:
        return Response(render_organization(_organization(request)))

    @extend_schema(
        summary="Rename the organization or switch it between Observe and Platform",
        request=OrganizationInput,
        responses={200: _ORGANIZATION},
    )
    def patch(self, request: Request) -> Response:
        body = OrganizationInput(data=request.data)
        body.is_valid(raise_exception=True)
        organization = organization_update(
            organization=_organization(request),
            actor=Actor.from_request(request),
            name=body.validated_data.get("name"),
            mode=body.validated_data.get("mode"),
        )
        return Response(render_organization(organization))


# --- Members and invitations ------------------------------------------------------------


def render_member(membership: Membership) -> dict[str, Any]:
    return {
        "id": membership.pk,
        "email": membership.user.email,
        "role": membership.role,
        "joinedAt": membership.created_at,
    }


def render_invitation(invitation: Invitation) -> dict[str, Any]:
    return {
        "id": invitation.pk,
        "email": invitation.email,
        "role": invitation.role,
        "createdAt": invitation.created_at,
        "expiresAt": invitation.expires_at,
    }


_MEMBER = inline_serializer(
    "AccountsMember",
    fields={
        "id": serializers.UUIDField(),
        "email": serializers.EmailField(),
        "role": serializers.ChoiceField(choices=Role.values),
        "joinedAt": serializers.DateTimeField(),
    },
)
_INVITATION = inline_serializer(
    "AccountsInvitation",
    fields={
        "id": serializers.UUIDField(),
        "email": serializers.EmailField(),
        "role": serializers.ChoiceField(choices=Role.values),
        "createdAt": serializers.DateTimeField(),
        "expiresAt": serializers.DateTimeField(),
    },
)
_MEMBERS = inline_serializer(
    "AccountsMembers",
    fields={
        "items": serializers.ListField(child=_MEMBER),
        "invitations": serializers.ListField(
            child=_INVITATION, help_text="open invitations, newest first"
        ),
    },
)


class InviteInput(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=KEY_GRANTABLE_ROLES, default=Role.MEMBER)


class RoleInput(serializers.Serializer):
    role = serializers.ChoiceField(choices=KEY_GRANTABLE_ROLES)


def _membership(request: Request, membership_id: str) -> Membership:
    return get_org_scoped_or_404(
        Membership.objects.select_related("user", "organization"),
        _organization(request),
        pk=_uuid_or_404(membership_id),
    )


def _not_an_owner(membership: Membership) -> None:
    if membership.role == Role.OWNER:
        raise Forbidden(
            "An API key cannot change or remove an owner; an owner can, in the dashboard."
        )


class MemberList(APIView):
    required_scopes = S.ADMIN

    @extend_schema(
        summary="The organization's members (oldest first) and open invitations",
        request=None,
        responses={200: _MEMBERS},
    )
    def get(self, request: Request) -> Response:
        organization = _organization(request)
        return Response(
            {
                "items": [render_member(m) for m in members_of(organization)],
                "invitations": [render_invitation(i) for i in open_invitations_of(organization)],
            }
        )


class MemberDetail(APIView):
    required_scopes = S.ADMIN

    @extend_schema(
        summary="Change a member's role (admin, member or viewer)",
        request=RoleInput,
        responses={200: _MEMBER},
    )
    def patch(self, request: Request, membership_id: str) -> Response:
        membership = _membership(request, membership_id)
        body = RoleInput(data=request.data)
        body.is_valid(raise_exception=True)
        _not_an_owner(membership)
        membership_change_role(
            membership=membership,
            role=body.validated_data["role"],
            actor=Actor.from_request(request),
        )
        return Response(render_member(membership))

    @extend_schema(
        summary="Remove a member from the organization",
        request=None,
        responses={204: None},
    )
    def delete(self, request: Request, membership_id: str) -> Response:
        membership = _membership(request, membership_id)
        _not_an_owner(membership)
        membership_remove(membership=membership, actor=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationCreate(APIView):
    required_scopes = S.ADMIN

    @extend_schema(
        summary="Invite someone by email (the invitation link is emailed, valid 7 days)",
        request=InviteInput,
        responses={201: _INVITATION},
    )
    def post(self, request: Request) -> Response:
        body = InviteInput(data=request.data)
        body.is_valid(raise_exception=True)
        invitation, _token = invitation_create(
            organization=_organization(request),
            email=body.validated_data["email"],
            role=body.validated_data["role"],
            actor=Actor.from_request(request),
        )
        return Response(render_invitation(invitation), status=status.HTTP_201_CREATED)


class InvitationRevoke(APIView):
    required_scopes = S.ADMIN

    @extend_schema(
        summary="Revoke an open invitation (its link stops working)",
        request=None,
        responses={204: None},
    )
    def delete(self, request: Request, invitation_id: str) -> Response:
        invitation = get_org_scoped_or_404(
            open_invitations_of(_organization(request)).select_related("organization"),
            _organization(request),
            pk=_uuid_or_404(invitation_id),
        )
        invitation_revoke(invitation=invitation, actor=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- The audit log ----------------------------------------------------------------------


def render_audit_entry(entry: AuditEntry) -> dict[str, Any]:
    actor: dict[str, Any]
    if entry.actor_user is not None:
        actor = {"type": "user", "email": entry.actor_user.email, "keyId": None}
    elif entry.actor_key_id is not None:
        actor = {"type": "key", "email": None, "keyId": entry.actor_key_id}
    else:
        actor = {"type": "system", "email": None, "keyId": None}
    return {
        "id": str(entry.pk),
        "action": entry.action,
        "actor": actor,
        "environment": entry.environment.kind if entry.environment else None,
        "targetType": entry.target_type,
        "targetId": entry.target_id,
        "detail": entry.detail,
        "ip": entry.ip,
        "requestId": entry.request_id,
        "createdAt": entry.created_at,
    }


_AUDIT_ENTRY = inline_serializer(
    "AccountsAuditEntry",
    fields={
        "id": serializers.CharField(),
        "action": serializers.CharField(help_text="e.g. plan.activated, member.role_changed"),
        "actor": inline_serializer(
            "AccountsAuditActor",
            fields={
                "type": serializers.ChoiceField(choices=["user", "key", "system"]),
                "email": serializers.EmailField(allow_null=True),
                "keyId": serializers.UUIDField(allow_null=True),
            },
        ),
        "environment": serializers.ChoiceField(
            choices=Environment.Kind.values,
            allow_null=True,
            help_text="null: an organization-level entry (members, settings)",
        ),
        "targetType": serializers.CharField(),
        "targetId": serializers.CharField(),
        "detail": serializers.DictField(help_text="[before, after] pairs for changes"),
        "ip": serializers.IPAddressField(allow_null=True),
        "requestId": serializers.CharField(),
        "createdAt": serializers.DateTimeField(),
    },
)


def _text_param(request: Request, name: str, max_length: int) -> str:
    value = request.query_params.get(name, "")
    if "\x00" in value or len(value) > max_length:
        raise InvalidQuery(fields={name: [f"At most {max_length} characters, no NUL."]})
    return value.strip()


class AuditLog(APIView):
    required_scopes = S.ADMIN

    @extend_schema(
        summary="The audit log, newest first: the key's environment and the organization's",
        request=None,
        parameters=[
            OpenApiParameter(
                "action",
                {"type": "string", "maxLength": 40},
                description="only actions starting with this (e.g. plan. or member.role_changed)",
            ),
            OpenApiParameter(
                "target", {"type": "string", "maxLength": 64}, description="one target's id"
            ),
            *PAGE_PARAMETERS,
        ],
        responses={200: page("AccountsAuditLog", _AUDIT_ENTRY)},
    )
    def get(self, request: Request) -> Response:
        environment = request_key(request).environment
        entries = audit_log_seen_from(environment)
        action = _text_param(request, "action", 40)
        target = _text_param(request, "target", 64)
        if action:
            entries = entries.filter(action__startswith=action)
        if target:
            entries = entries.filter(target_id=target)
        return Response(paginate_newest_first(entries, request, render_audit_entry))
