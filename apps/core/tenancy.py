"""The tenancy choke-point.

Every tenant-owned row carries its environment (and so its organization).
Reads go through :func:`scoped` or :func:`get_scoped_or_404`, which take the
environment first; there is no other sanctioned way to fetch tenant data.
A lookup of another tenant's object is a 404, never a 403, so ids do not leak.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models

from apps.core.errors import NotFound

if TYPE_CHECKING:
    from apps.accounts.models import Environment, Organization

M = TypeVar("M", bound=models.Model)


class EnvironmentQuerySet(models.QuerySet[M]):
    def for_env(self, environment: Environment) -> EnvironmentQuerySet[M]:
        return self.filter(environment_id=environment.pk)


def unconstrained_environment(on_delete: Any) -> models.ForeignKey:
    """The environment of a high-volume row (an event, a ledger entry), without a
    foreign-key constraint in the database: each constrained insert is one more check
    (at the commit) on the one environment row that every writing transaction of the
    tenant shares. Where the rows are written the environment comes from a verified
    key, and ``on_delete`` is still Django's to apply."""
    return models.ForeignKey(
        "accounts.Environment",
        on_delete=on_delete,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )


class EnvironmentOwned(models.Model):
    """Base for tenant data: one environment (test or live) of one organization."""

    environment = models.ForeignKey(
        "accounts.Environment", on_delete=models.CASCADE, related_name="+", db_index=False
    )

    objects = EnvironmentQuerySet.as_manager()

    class Meta:
        abstract = True


class OrganizationQuerySet(models.QuerySet[M]):
    def for_org(self, organization: Organization) -> OrganizationQuerySet[M]:
        return self.filter(organization_id=organization.pk)


def scoped(model: type[M] | models.QuerySet[M], environment: Environment) -> models.QuerySet[M]:
    """All rows of ``model`` (or a queryset of it) that belong to ``environment``."""
    queryset = model if isinstance(model, models.QuerySet) else model._default_manager.all()
    if environment is None or environment.pk is None:
        raise ValueError("a tenant query needs an environment")
    return queryset.filter(environment_id=environment.pk)


def scoped_to_org(
    model: type[M] | models.QuerySet[M], organization: Organization
) -> models.QuerySet[M]:
    queryset = model if isinstance(model, models.QuerySet) else model._default_manager.all()
    if organization is None or organization.pk is None:
        raise ValueError("an organization query needs an organization")
    return queryset.filter(organization_id=organization.pk)


def get_scoped_or_404(
    model: type[M] | models.QuerySet[M], environment: Environment, **lookup: Any
) -> M:
    try:
        return scoped(model, environment).get(**lookup)
    except (models.ObjectDoesNotExist, ValueError, TypeError, DjangoValidationError) as exc:
        # ValueError/TypeError: a malformed id (e.g. not a UUID) is just "not found".
        raise NotFound() from exc


def get_org_scoped_or_404(
    model: type[M] | models.QuerySet[M], organization: Organization, **lookup: Any
) -> M:
    try:
        return scoped_to_org(model, organization).get(**lookup)
    except (models.ObjectDoesNotExist, ValueError, TypeError, DjangoValidationError) as exc:
        raise NotFound() from exc
