"""Reads for API keys; every function takes the environment first."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.accounts.models import Environment
from apps.core.tenancy import get_scoped_or_404, scoped

from .models import ApiKey


def apikeys_for(environment: Environment) -> QuerySet[ApiKey]:
    return scoped(ApiKey, environment).select_related("customer", "environment")


def apikey_get(environment: Environment, key_id: object) -> ApiKey:
    return get_scoped_or_404(apikeys_for(environment), environment, pk=key_id)
