"""Writes of provider credentials: the secret is encrypted before it reaches a model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from apps.core.errors import ValidationFailed

from . import cache, crypto
from .models import ModelRoute, Provider, ProviderCredential

if TYPE_CHECKING:
    from apps.accounts.models import Environment

SECRET_MAX_LENGTH = 1000


def _clean_secret(secret: str) -> str:
    secret = secret.strip()
    if len(secret) < 8 or len(secret) > SECRET_MAX_LENGTH or not secret.isprintable():
        raise ValidationFailed(
            fields={"apiKey": [f"A provider key is 8-{SECRET_MAX_LENGTH} printable characters."]}
        )
    return secret


@transaction.atomic
def credential_set(
    *, environment: Environment, provider: str, secret: str, base_url: str = ""
) -> ProviderCredential:
    """Store (or replace) the environment's key for ``provider``; returns the credential."""
    if provider not in Provider.values:
        raise ValidationFailed(fields={"provider": ["Choose openai or anthropic."]})
    secret = _clean_secret(secret)
    now = timezone.now()
    credential, _ = ProviderCredential.objects.update_or_create(
        environment=environment,
        provider=provider,
        defaults={
            "secret_encrypted": crypto.encrypt(secret),
            "hint": secret[-4:],
            "base_url": base_url.rstrip("/"),
            "updated_at": now,
        },
        create_defaults={
            "secret_encrypted": crypto.encrypt(secret),
            "hint": secret[-4:],
            "base_url": base_url.rstrip("/"),
            "created_at": now,
            "updated_at": now,
        },
    )
    transaction.on_commit(cache.forget_all)
    return credential


def credential_delete(*, credential: ProviderCredential) -> None:
    credential.delete()
    cache.forget_all()


def credentials_rotate() -> int:
    """Re-encrypt every credential with the first configured key; how many were."""
    count = 0
    for credential in ProviderCredential.objects.all().iterator():
        rotated = crypto.rotate(credential.secret_encrypted)
        ProviderCredential.objects.filter(pk=credential.pk).update(secret_encrypted=rotated)
        count += 1
    return count


MAX_TARGETS = 5


@transaction.atomic
def route_set(
    *, environment: Environment, provider: str, alias: str, targets: list[str]
) -> ModelRoute:
    """Route ``alias`` to ``targets`` (tried in order), replacing its previous route."""
    if provider not in Provider.values:
        raise ValidationFailed(fields={"provider": ["Choose openai or anthropic."]})
    if not 1 <= len(targets) <= MAX_TARGETS:
        raise ValidationFailed(fields={"targets": [f"1-{MAX_TARGETS} model names, in order."]})
    route, _ = ModelRoute.objects.update_or_create(
        environment=environment,
        provider=provider,
        alias=alias,
        defaults={"targets": targets},
    )
    transaction.on_commit(cache.forget_all)
    return route


def route_delete(*, route: ModelRoute) -> None:
    route.delete()
    cache.forget_all()
