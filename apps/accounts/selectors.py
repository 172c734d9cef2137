"""Reads for accounts; each takes the organization first."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from apps.core.tenancy import scoped_to_org

from .models import AuditEntry, Environment, Invitation, Membership, Organization


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


def audit_log_seen_from(environment: Environment) -> QuerySet[AuditEntry]:
    """What an API key of ``environment`` may read of its organization's audit log: the
    environment's own entries and the organization-level ones (no environment), never
    the other environment's."""
    return audit_log_of(environment.organization).filter(
        Q(environment=environment) | Q(environment__isnull=True)
    )
