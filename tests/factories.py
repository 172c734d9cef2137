"""factory_boy factories. Tenant objects are made through the services, so tests
exercise the same invariants as production (environments, audit, hashing)."""

from __future__ import annotations

from typing import Any

import factory
from allauth.account.models import EmailAddress

from apps.accounts.audit import Actor
from apps.accounts.models import Environment, Organization, User
from apps.accounts.services import organization_create
from apps.apikeys.models import ApiKey
from apps.apikeys.services import IssuedKey, apikey_create
from apps.customers.models import Customer

PASSWORD = "correct-horse-battery-staple-42"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def verified(self: User, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            self.save()
            EmailAddress.objects.create(user=self, email=self.email, primary=True, verified=True)


def make_org(owner: User | None = None, name: str = "Org", mode: str = "platform") -> Organization:
    owner = owner or UserFactory()
    return organization_create(name=name, owner=owner, mode=mode, actor=Actor(user=owner))


def env_of(org: Organization, kind: str = "test") -> Environment:
    return Environment.objects.select_related("organization").get(organization=org, kind=kind)


def make_key(environment: Environment, kind: str = "sk", **kwargs: Any) -> IssuedKey:
    return apikey_create(environment=environment, kind=kind, actor=Actor.system(), **kwargs)


def make_customer(environment: Environment, reference_id: str = "cus_1", **kwargs: Any) -> Customer:
    return Customer.objects.create(environment=environment, reference_id=reference_id, **kwargs)


__all__ = ["PASSWORD", "ApiKey", "UserFactory", "env_of", "make_customer", "make_key", "make_org"]
