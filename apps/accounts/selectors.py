"""Reads for accounts; each takes the organization first."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.core.tenancy import scoped_to_org

from .models import AuditEntry, Invitation, Membership, Organization


def members_of(organization: Organization) -> QuerySet[Membership]:
    return scoped_to_org(Membership, organization).select_related("user").order_by("created_at")


def open_invitations_of(organization: Organization) -> QuerySet[Invitation]:
    return (
        scoped_to_org(Invitation, organization)
        .filter(accepted_at__isnull=True, revoked_at__isnull=True)
        .order_by("-created_at")
    )


def audit_log_of(organization: Organization) -> QuerySet[AuditEntry]:
    return scoped_to_org(AuditEntry, organization).select_related("actor_user", "environment")
