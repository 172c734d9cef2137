"""Reads for features; every function takes the environment first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Q, QuerySet

from apps.core.errors import NotFound, ValidationFailed
from apps.core.tenancy import get_scoped_or_404, scoped

from .models import Feature
from .services import KEY_MAX_LENGTH

if TYPE_CHECKING:
    from apps.accounts.models import Environment

SEARCH_MAX_LENGTH = 128


def features_for(environment: Environment) -> QuerySet[Feature]:
    return scoped(Feature, environment)


def feature_get(environment: Environment, key: str) -> Feature:
    """The environment's feature with this key, else 404 (also for keys that cannot exist)."""
    if not key or len(key) > KEY_MAX_LENGTH or "\x00" in key:
        raise NotFound("No such feature.")
    try:
        return get_scoped_or_404(Feature, environment, key=key)
    except NotFound:
        raise NotFound("No such feature.") from None


def features_search(
    environment: Environment, search: str = "", *, is_enabled: bool | None = None
) -> QuerySet[Feature]:
    """Features whose key or name contains ``search`` (case-insensitive).

    A catalog holds tens to hundreds of features per environment, so the
    ``(environment, key)`` unique index narrows the scan enough; no trigram index.
    """
    queryset = features_for(environment)
    search = search.strip()
    if search:
        if len(search) > SEARCH_MAX_LENGTH or "\x00" in search:
            raise ValidationFailed(
                fields={"search": [f"At most {SEARCH_MAX_LENGTH} characters, no NUL."]}
            )
        queryset = queryset.filter(Q(key__icontains=search) | Q(name__icontains=search))
    if is_enabled is not None:
        queryset = queryset.filter(is_enabled=is_enabled)
    return queryset
