"""Writes for accounts: organizations, memberships, invitations."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from apps.core.errors import Conflict, Forbidden, ValidationFailed
from apps.core.tenancy import scoped_to_org

from .audit import Actor, audit_record
from .models import AuditEntry, Environment, Invitation, Membership, Organization, Role, User

INVITATION_TTL = dt.timedelta(days=7)


def _unique_slug(name: str) -> str:
    base = (slugify(name) or "org")[:50].strip("-") or "org"
    if len(base) < 3:
        base = f"{base}-org"
    slug = base
    while Organization.objects.filter(slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


@transaction.atomic
def organization_create(
    *, name: str, owner: User, mode: str = Organization.Mode.OBSERVE, actor: Actor | None = None
) -> Organization:
    """A new organization with its test and live environments and ``owner`` as owner."""
    name = name.strip()
    if not name:
        raise ValidationFailed(fields={"name": ["A name is required."]})
    if mode not in Organization.Mode.values:
        raise ValidationFailed(fields={"mode": ["Choose observe or platform."]})
    organization = Organization.objects.create(name=name, slug=_unique_slug(name), mode=mode)
    Environment.objects.bulk_create(
        [Environment(organization=organization, kind=kind) for kind in Environment.Kind.values]
    )
    Membership.objects.create(organization=organization, user=owner, role=Role.OWNER)
    audit_record(
        organization=organization,
        action=AuditEntry.Action.ORGANIZATION_CREATED,
        target_type="organization",
        target_id=organization.pk,
        actor=actor or Actor(user=owner),
        detail={"name": name, "mode": mode},
    )
    return organization


@transaction.atomic
def organization_update(
    *, organization: Organization, actor: Actor, name: str | None = None, mode: str | None = None
) -> Organization:
    changes: dict[str, list[str]] = {}
    if name is not None and name.strip() and name.strip() != organization.name:
        changes["name"] = [organization.name, name.strip()]
        organization.name = name.strip()
    if mode is not None and mode != organization.mode:
        if mode not in Organization.Mode.values:
            raise ValidationFailed(fields={"mode": ["Choose observe or platform."]})
        changes["mode"] = [organization.mode, mode]
        organization.mode = mode
    if changes:
        organization.save(update_fields=["name", "mode"])
        audit_record(
            organization=organization,
            action=AuditEntry.Action.SETTINGS_CHANGED,
            target_type="organization",
            target_id=organization.pk,
            actor=actor,
            detail=changes,
        )
    return organization


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def invitation_create(
    *, organization: Organization, email: str, role: str, actor: Actor
) -> tuple[Invitation, str]:
    """Invite ``email``; returns the invitation and the one-time token for the link."""
    email = email.strip().lower()
    if role not in Role.values or role == Role.OWNER:
        raise ValidationFailed(fields={"role": ["Invite as admin, member or viewer."]})
    if scoped_to_org(Membership, organization).filter(user__email__iexact=email).exists():
        raise Conflict(f"{email} is already a member.", code="already_member")
    token = secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            invitation = Invitation.objects.create(
                organization=organization,
                email=email,
                role=role,
                token_hash=_token_hash(token),
                invited_by=actor.user,
                expires_at=timezone.now() + INVITATION_TTL,
            )
    except IntegrityError:
        raise Conflict(f"{email} already has an open invitation.", code="already_invited") from None
    audit_record(
        organization=organization,
        action=AuditEntry.Action.MEMBER_INVITED,
        target_type="invitation",
        target_id=invitation.pk,
        actor=actor,
        detail={"email": email, "role": role},
    )
    from .tasks import send_invitation_email

    transaction.on_commit(
        lambda: send_invitation_email.delay(str(invitation.pk), token), robust=True
    )
    return invitation, token


def invitation_for_token(token: str) -> Invitation | None:
    invitation = (
        Invitation.objects.select_related("organization")
        .filter(token_hash=_token_hash(token))
        .first()
    )
    return invitation if invitation is not None and invitation.is_open else None


@transaction.atomic
def invitation_accept(*, token: str, user: User, actor: Actor) -> Membership:
    invitation = (
        Invitation.objects.select_for_update().filter(token_hash=_token_hash(token)).first()
    )
    if invitation is None or not invitation.is_open:
        raise ValidationFailed("This invitation is no longer valid.", code="invitation_invalid")
    if invitation.email.lower() != user.email.lower():
        raise Forbidden("This invitation was sent to another address.")
    membership, created = Membership.objects.get_or_create(
        organization=invitation.organization, user=user, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    if created:
        audit_record(
            organization=invitation.organization,
            action=AuditEntry.Action.MEMBER_JOINED,
            target_type="membership",
            target_id=membership.pk,
            actor=actor,
            detail={"email": user.email, "role": membership.role},
        )
    return membership


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, actor: Actor) -> Invitation:
    if invitation.revoked_at is None and invitation.accepted_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit_record(
            organization=invitation.organization,
            action=AuditEntry.Action.INVITATION_REVOKED,
            target_type="invitation",
            target_id=invitation.pk,
            actor=actor,
            detail={"email": invitation.email},
        )
    return invitation


def _lock_owners(organization: Organization) -> int:
    """Lock the organization's owner rows and count them (guards "last owner")."""
    return len(
        list(
            scoped_to_org(Membership.objects.select_for_update(), organization)
            .filter(role=Role.OWNER)
            .values_list("pk", flat=True)
        )
    )


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str, actor: Actor) -> Membership:
    if role not in Role.values:
        raise ValidationFailed(fields={"role": ["Unknown role."]})
    if membership.role == role:
        return membership
    owners = _lock_owners(membership.organization)
    if membership.role == Role.OWNER and owners <= 1:
        raise Conflict("An organization needs at least one owner.", code="last_owner")
    before = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        organization=membership.organization,
        action=AuditEntry.Action.MEMBER_ROLE_CHANGED,
        target_type="membership",
        target_id=membership.pk,
        actor=actor,
        detail={"email": membership.user.email, "from": before, "to": role},
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: Actor) -> None:
    owners = _lock_owners(membership.organization)
    if membership.role == Role.OWNER and owners <= 1:
        raise Conflict("An organization needs at least one owner.", code="last_owner")
    audit_record(
        organization=membership.organization,
        action=AuditEntry.Action.MEMBER_REMOVED,
        target_type="membership",
        target_id=membership.pk,
        actor=actor,
        detail={"email": membership.user.email, "role": membership.role},
    )
    membership.delete()


def expire_open_invitations(*, now: dt.datetime | None = None) -> int:
    """Mark invitations past their expiry as revoked; returns how many."""
    now = now or timezone.now()
    return Invitation.objects.filter(
        accepted_at__isnull=True, revoked_at__isnull=True, expires_at__lte=now
    ).update(revoked_at=now)
