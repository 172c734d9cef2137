"""Reads of provider credentials (always within one environment)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from apps.core.tenancy import get_scoped_or_404, scoped

from .models import ModelRoute, ProviderCredential

if TYPE_CHECKING:
    from apps.accounts.models import Environment


def credentials_list(environment: Environment) -> QuerySet[ProviderCredential]:
    return scoped(ProviderCredential, environment).order_by("provider")


def credential_get(environment: Environment, credential_id: object) -> ProviderCredential:
    """The environment's credential by id; 404 for any other environment's."""
    return get_scoped_or_404(ProviderCredential, environment, pk=credential_id)


def credential_for(environment_id: object, provider: str) -> ProviderCredential | None:
    """The environment's credential for ``provider`` (the gateway's lookup), or None."""
    return scoped(ProviderCredential, environment_id).filter(provider=provider).first()


def routes_list(environment: Environment) -> QuerySet[ModelRoute]:
    return scoped(ModelRoute, environment).order_by("provider", "alias")


def route_get(environment: Environment, route_id: object) -> ModelRoute:
    return get_scoped_or_404(ModelRoute, environment, pk=route_id)


def routes_for(environment_id: object, provider: str) -> dict[str, tuple[str, ...]]:
    """The environment's aliases for ``provider``: alias -> its targets, in order."""
    rows = scoped(ModelRoute, environment_id).filter(provider=provider)
    return {route.alias: tuple(route.targets) for route in rows}
