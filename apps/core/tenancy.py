"""The tenancy choke-point.

Every tenant-owned row carries its environment (and so its organization), or, for
organization-owned rows (memberships, environments), its organization. Every read,
update or delete of tenant rows names its tenant through this module and no other way:
:func:`scoped` (or ``Model.objects.for_env``) and :func:`get_scoped_or_404` take the
environment first; :func:`scoped_to_environments` serves system jobs over many tenants
in one batch; :func:`scoped_to_org` and :func:`get_org_scoped_or_404` serve
organization-owned rows. A lookup of another tenant's object is a 404, never a 403, so
ids do not leak. Raw SQL on a tenant table binds the environment as a parameter
(``environment_id = %s``).

``tests/core/test_tenancy_idiom.py`` enforces this on the syntax tree of ``apps/``: a
``filter``/``exclude``/``get``/``Q`` that names ``environment...`` or
``organization...`` by hand, or raw SQL reading a tenant table without the parameter,
fails it, unless its allow-list names the site and why.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models

from apps.core.errors import NotFound

if TYPE_CHECKING:
    from apps.accounts.models import Environment, Organization

M = TypeVar("M", bound=models.Model)
# What a tenant query starts from: a model, one of its managers, or a queryset of it.
Rows = type[M] | models.Manager[M] | models.QuerySet[M]


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


def _pk_of(tenant: Any, label: str) -> Any:
    """The primary key of ``tenant``: an instance of the model labelled ``label`` or its id."""
    if isinstance(tenant, models.Model):
        if tenant._meta.label != label:
            raise TypeError(f"a tenant query takes a {label} or its id, not {tenant._meta.label}")
        tenant = tenant.pk
    if tenant is None:
        raise ValueError(f"a tenant query needs a {label}")
    return tenant


def _queryset(model: Rows[M]) -> models.QuerySet[M]:
    if isinstance(model, models.QuerySet):
        return model
    if isinstance(model, models.Manager):
        return model.all()
    return model._default_manager.all()


def scoped(model: Rows[M], environment: Environment | Any) -> models.QuerySet[M]:
    """All rows of ``model`` (a model, a manager or a queryset of it) that belong to
    ``environment`` (an ``Environment`` or its id)."""
    return _queryset(model).filter(environment_id=_pk_of(environment, "accounts.Environment"))


def scoped_to_environments(model: Rows[M], environment_ids: Iterable[Any]) -> models.QuerySet[M]:
    """The rows of ``model`` that belong to any of ``environment_ids``: for system jobs that
    work on many tenants' rows in one batch (the billing cycle), where each row's own
    environment then travels with it."""
    if isinstance(environment_ids, models.QuerySet):  # a subquery of environment ids
        return _queryset(model).filter(environment_id__in=environment_ids)
    ids = list(environment_ids)
    if any(pk is None for pk in ids):
        raise ValueError("a tenant query needs environments")
    return _queryset(model).filter(environment_id__in=ids)


def scoped_to_org(model: Rows[M], organization: Organization | Any) -> models.QuerySet[M]:
    """All rows of ``model`` that belong to ``organization`` (an ``Organization`` or its id)."""
    return _queryset(model).filter(organization_id=_pk_of(organization, "accounts.Organization"))


def get_scoped_or_404(model: Rows[M], environment: Environment | Any, **lookup: Any) -> M:
    try:
        return scoped(model, environment).get(**lookup)
    except (models.ObjectDoesNotExist, ValueError, TypeError, DjangoValidationError) as exc:
        # ValueError/TypeError: a malformed id (e.g. not a UUID) is just "not found".
        raise NotFound() from exc


def get_org_scoped_or_404(model: Rows[M], organization: Organization | Any, **lookup: Any) -> M:
    try:
        return scoped_to_org(model, organization).get(**lookup)
    except (models.ObjectDoesNotExist, ValueError, TypeError, DjangoValidationError) as exc:
        raise NotFound() from exc
