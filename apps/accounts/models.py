"""Users, organizations, their two environments, memberships, invitations, audit."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from apps.core.tenancy import OrganizationQuerySet


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra: Any) -> User:
        if not email:
            raise ValueError("an email is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **extra)


class User(AbstractUser):
    """A person who signs in with an email address (no username)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    username = None  # type: ignore[assignment]
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    objects: ClassVar[UserManager] = UserManager()  # type: ignore[assignment]

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email


class Organization(models.Model):
    class Mode(models.TextChoices):
        OBSERVE = "observe", "Observe"
        PLATFORM = "platform", "Platform"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=150)
    slug = models.SlugField(max_length=63, unique=True)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.OBSERVE)
    # Several active subscriptions per customer (Platform), off by default.
    allow_multiple_subscriptions = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class Environment(models.Model):
    """One of an organization's two data worlds; every tenant row carries one."""

    class Kind(models.TextChoices):
        TEST = "test", "Test"
        LIVE = "live", "Live"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="environments"
    )
    kind = models.CharField(max_length=4, choices=Kind.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "kind"], name="environment_org_kind_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.organization.name} ({self.kind})"


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


# What each role may do in the dashboard. Viewers read; members operate the
# product (keys, catalog); admins and owners also manage people and settings.
ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Membership(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "user"], name="membership_org_user_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.organization} ({self.role})"

    def at_least(self, role: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(role)]


class Invitation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="invitations"
    )
    email = models.EmailField()
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)
    # SHA-256 of the emailed token; the token itself is never stored.
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        constraints = [
            # At most one open invitation per address and organization.
            models.UniqueConstraint(
                Lower("email"),
                "organization",
                condition=models.Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="invitation_open_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.email} -> {self.organization}"

    @property
    def is_open(self) -> bool:
        return (
            self.accepted_at is None
            and self.revoked_at is None
            and self.expires_at > timezone.now()
        )


class AuditEntry(models.Model):
    """Who did what, when, from where. Append-only."""

    class Action(models.TextChoices):
        KEY_CREATED = "key.created"
        KEY_ROTATED = "key.rotated"
        KEY_REVOKED = "key.revoked"
        MEMBER_INVITED = "member.invited"
        MEMBER_JOINED = "member.joined"
        MEMBER_REMOVED = "member.removed"
        MEMBER_ROLE_CHANGED = "member.role_changed"
        INVITATION_REVOKED = "invitation.revoked"
        ORGANIZATION_CREATED = "organization.created"
        SETTINGS_CHANGED = "settings.changed"
        # Changes inside an environment (pricing, catalog, billing, credits, Stripe).
        PRICE_OVERRIDE_CREATED = "price_override.created"
        PRICE_OVERRIDE_UPDATED = "price_override.updated"
        PRICE_OVERRIDE_DELETED = "price_override.deleted"
        RECOST_REQUESTED = "events.recost_requested"
        PLAN_CREATED = "plan.created"
        PLAN_UPDATED = "plan.updated"
        PLAN_ACTIVATED = "plan.activated"
        PLAN_ARCHIVED = "plan.archived"
        PLAN_DELETED = "plan.deleted"
        PLAN_FEATURE_LINKED = "plan.feature_linked"
        PLAN_RULE_CHANGED = "plan.rule_changed"
        PLAN_FEATURE_UNLINKED = "plan.feature_unlinked"
        SUBSCRIPTION_CREATED = "subscription.created"
        SUBSCRIPTION_CANCELLED = "subscription.cancelled"
        SUBSCRIPTION_CANCEL_REVERTED = "subscription.cancel_reverted"
        SUBSCRIPTION_PLAN_CHANGED = "subscription.plan_changed"
        SUBSCRIPTION_CHANGE_DROPPED = "subscription.change_dropped"
        INVOICE_MARKED_PAID = "invoice.marked_paid"
        INVOICE_VOIDED = "invoice.voided"
        INVOICE_ISSUED = "invoice.issued"
        BILLING_SETTINGS_CHANGED = "billing.settings_changed"
        CREDITS_GRANTED = "credits.granted"
        CREDITS_DEDUCTED = "credits.deducted"
        CREDITS_REVERSED = "credits.reversed"
        STRIPE_CONNECTED = "stripe.connected"
        STRIPE_DISCONNECTED = "stripe.disconnected"

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    actor_user = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The API key that acted, when the change came through the API.
    actor_key_id = models.UUIDField(null=True, blank=True)
    action = models.CharField(max_length=40, choices=Action.choices)
    target_type = models.CharField(max_length=40)
    target_id = models.CharField(max_length=64)
    detail = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["organization", "-created_at"], name="audit_org_time")]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type}:{self.target_id}"
