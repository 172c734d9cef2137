"""Flows that span accounts and keys: first-run onboarding, programmatic signup,
and the scripted bootstrap used by `manage.py bootstrap` and the demo data."""

from __future__ import annotations

import dataclasses

from allauth.account.models import EmailAddress
from django.db import transaction

from apps.accounts.audit import Actor
from apps.accounts.models import Environment, Membership, Organization, Role, User
from apps.accounts.services import organization_create
from apps.apikeys import scopes as S
from apps.apikeys.models import ApiKey
from apps.apikeys.services import IssuedKey, apikey_create
from apps.core.errors import Conflict
from apps.core.tenancy import scoped, scoped_to_org
from apps.customers.models import Customer


@dataclasses.dataclass(frozen=True)
class SignupResult:
    user: User
    organization: Organization
    issued: IssuedKey


def environment_of(organization: Organization, kind: str) -> Environment:
    return scoped_to_org(Environment.objects.select_related("organization"), organization).get(
        kind=kind
    )


@transaction.atomic
def onboarding_complete(*, user: User, name: str, mode: str, actor: Actor) -> SignupResult:
    """A signed-up user names their organization: create it and a test secret key."""
    organization = organization_create(name=name, owner=user, mode=mode, actor=actor)
    issued = apikey_create(
        environment=environment_of(organization, Environment.Kind.TEST),
        kind=ApiKey.Kind.SECRET,
        actor=actor,
        name="Default test key",
    )
    return SignupResult(user=user, organization=organization, issued=issued)


@transaction.atomic
def programmatic_signup(
    *,
    email: str,
    scopes: list[str],
    budget_cents: int | None,
    budget_period: str | None,
    expires_at: object,
    actor: Actor,
) -> SignupResult:
    """``POST /api/signup``: a user without a usable password, an organization, an obs_ key.

    The key lives in the ``live`` environment: an agent that signs itself up is
    doing real work. The user gets an email to set a password for the dashboard.
    """
    email = email.strip().lower()
    if User.objects.filter(email__iexact=email).exists():
        raise Conflict(
            "An account with this email already exists; sign in to create keys.",
            code="account_exists",
        )
    user = User.objects.create_user(email=email)
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=False)
    organization = organization_create(
        name=email.split("@")[0] or email,
        owner=user,
        mode=Organization.Mode.OBSERVE,
        actor=Actor(user=user, ip=actor.ip),
    )
    issued = apikey_create(
        environment=environment_of(organization, Environment.Kind.LIVE),
        kind=ApiKey.Kind.OBSERVE,
        actor=Actor(user=user, ip=actor.ip),
        name="Signup key",
        scopes=scopes,
        budget_cents=budget_cents,
        budget_period=budget_period,
        expires_at=expires_at,  # type: ignore[arg-type]
    )
    from .tasks import send_set_password_email

    # robust: with the broker unavailable the email is not sent (logged), and the answer
    # that carries the new key still goes out; the user can reset the password instead.
    transaction.on_commit(lambda: send_set_password_email.delay(str(user.pk)), robust=True)
    return SignupResult(user=user, organization=organization, issued=issued)


def set_password_link(user: User) -> str:
    """A link to allauth's password-reset-from-key page, which doubles as "set a password"."""
    from allauth.account.forms import default_token_generator
    from allauth.account.utils import user_pk_to_url_str
    from django.conf import settings
    from django.urls import reverse

    path = reverse(
        "account_reset_password_from_key",
        kwargs={
            "uidb36": user_pk_to_url_str(user),
            "key": default_token_generator.make_token(user),
        },
    )
    return settings.SITE_URL + path


@dataclasses.dataclass
class BootstrapResult:
    user: User
    organization: Organization
    created: bool
    keys: dict[str, dict[str, str]]


@transaction.atomic
def bootstrap_account(
    *,
    email: str,
    org_name: str,
    password: str | None = None,
    mode: str = Organization.Mode.PLATFORM,
) -> BootstrapResult:
    """User + organization + both environments + one key of each kind (sk, obs, ck) per
    environment. Idempotent by (email, organization name): a second call makes nothing
    new and answers the existing keys' ids (secrets are only shown when created)."""
    actor = Actor.system()
    email = email.strip().lower()
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        user = User.objects.create_user(email=email, password=password)
    elif password:
        user.set_password(password)
        user.save(update_fields=["password"])
    EmailAddress.objects.update_or_create(
        user=user, email=email, defaults={"primary": True, "verified": True}
    )
    membership = (
        Membership.objects.select_related("organization")
        .filter(user=user, organization__name=org_name, role=Role.OWNER)
        .first()
    )
    created = membership is None
    organization = (
        organization_create(name=org_name, owner=user, mode=mode, actor=Actor(user=user))
        if membership is None
        else membership.organization
    )
    keys: dict[str, dict[str, str]] = {}
    for environment in scoped_to_org(Environment, organization).select_related("organization"):
        customer, _ = Customer.objects.get_or_create(
            environment=environment,
            reference_id="cus_demo",
            defaults={"email": "jane@example.com", "first_name": "Jane", "last_name": "Smith"},
        )
        wanted = [
            (ApiKey.Kind.SECRET, None, None),
            (
                ApiKey.Kind.OBSERVE,
                [S.EVENTS_WRITE, S.USAGE_READ, S.EVENTS_READ, S.MODELS_READ],
                None,
            ),
            (ApiKey.Kind.CUSTOMER, [S.CUSTOMER_READ], customer),
        ]
        for kind, scopes, pinned in wanted:
            existing = (
                scoped(ApiKey, environment)
                .filter(kind=kind, name="Bootstrap", revoked_at__isnull=True)
                .first()
            )
            label = f"{kind}_{environment.kind}"
            if existing is not None:
                keys[label] = {"id": str(existing.pk), "prefix": existing.prefix, "key": ""}
                continue
            issued = apikey_create(
                environment=environment,
                kind=kind,
                actor=actor,
                name="Bootstrap",
                scopes=scopes,
                customer=pinned,
            )
            keys[label] = {
                "id": str(issued.key.pk),
                "prefix": issued.key.prefix,
                "key": issued.plaintext,
            }
    return BootstrapResult(user=user, organization=organization, created=created, keys=keys)
