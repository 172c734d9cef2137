"""Demo data for `make run`: a known login and known keys, loaded idempotently.

The demo secret key is the one the public walkthrough uses
(``sk_test_67d9fb04f0344036ba92ecc973f1445a``), so its snippets run against a
local server as written. Refused in production: these secrets are public.
"""

from __future__ import annotations

import dataclasses

from allauth.account.models import EmailAddress
from django.conf import settings
from django.db import transaction

from apps.accounts.audit import Actor
from apps.accounts.models import Environment, Membership, Organization, User
from apps.accounts.services import organization_create
from apps.apikeys import scopes as S
from apps.apikeys.models import ApiKey
from apps.apikeys.services import apikey_create, hash_key
from apps.core.tenancy import scoped_to_org
from apps.customers.models import Customer

DEMO_EMAIL = "demo@tanso.local"
DEMO_PASSWORD = "tanso-demo-password"
DEMO_ORG = "Acme AI (demo)"
DEMO_KEYS = {
    "sk_test": "sk_test_67d9fb04f0344036ba92ecc973f1445a",
    "obs_test": "obs_3f9a2c1e8b7d4a6f9e0c5b2a1d8e7f6c",
    "ck_test": "ck_test_5b1e9c2d7a3f4e8b9c0d1e2f3a4b5c6d",
}


@dataclasses.dataclass(frozen=True)
class DemoAccount:
    email: str
    password: str
    organization: Organization
    environment: Environment  # the test environment: keys and history live there
    keys: dict[str, str]


@transaction.atomic
def demo_load() -> DemoAccount:
    if settings.PRODUCTION:
        raise RuntimeError("demo data publishes its secrets; it is not loaded in production")
    user = User.objects.filter(email=DEMO_EMAIL).first()
    if user is None:
        user = User.objects.create_user(email=DEMO_EMAIL, password=DEMO_PASSWORD)
    EmailAddress.objects.update_or_create(
        user=user, email=DEMO_EMAIL, defaults={"primary": True, "verified": True}
    )
    membership = (
        Membership.objects.select_related("organization")
        .filter(user=user, organization__name=DEMO_ORG)
        .first()
    )
    organization = (
        membership.organization
        if membership
        else organization_create(
            name=DEMO_ORG, owner=user, mode=Organization.Mode.PLATFORM, actor=Actor(user=user)
        )
    )
    test = scoped_to_org(Environment.objects.select_related("organization"), organization).get(
        kind=Environment.Kind.TEST
    )
    customer, _ = Customer.objects.get_or_create(
        environment=test,
        # Not cus_123: the public quickstart creates that one and expects 201.
        reference_id="cus_demo",
        defaults={"email": "demo-customer@example.com", "first_name": "Dana", "last_name": "Demo"},
    )
    wanted = {
        "sk_test": (ApiKey.Kind.SECRET, None, None),
        "obs_test": (
            ApiKey.Kind.OBSERVE,
            [
                S.EVENTS_WRITE,
                S.EVENTS_READ,
                S.USAGE_READ,
                S.CUSTOMERS_READ,
                S.MODELS_READ,
                S.PROXY_CHAT,
            ],
            None,
        ),
        "ck_test": (ApiKey.Kind.CUSTOMER, [S.CUSTOMER_READ], customer),
    }
    for label, (kind, scopes, pinned) in wanted.items():
        plaintext = DEMO_KEYS[label]
        if not ApiKey.objects.filter(secret_hash=hash_key(plaintext)).exists():
            apikey_create(
                environment=test,
                kind=kind,
                actor=Actor(user=user),
                name=f"Demo {label}",
                scopes=scopes,
                customer=pinned,
                plaintext=plaintext,
            )
    return DemoAccount(
        email=DEMO_EMAIL,
        password=DEMO_PASSWORD,
        organization=organization,
        environment=test,
        keys=dict(DEMO_KEYS),
    )
