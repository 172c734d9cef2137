"""Reads of the Stripe import; every function takes the environment first."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from django.db.models import QuerySet

from apps.core.errors import NotFound
from apps.core.tenancy import scoped

from .models import ImportedSubscription, ImportJob

if TYPE_CHECKING:
    from apps.accounts.models import Environment


def import_job_get(environment: Environment, job_id: str) -> ImportJob:
    """One of the environment's jobs; 404 for another tenant's, or a malformed id."""
    try:
        key = uuid.UUID(str(job_id))
    except ValueError:
        raise NotFound("No such import job.") from None
    job = scoped(ImportJob, environment).filter(pk=key).first()
    if job is None:
        raise NotFound("No such import job.")
    return job


def import_jobs(environment: Environment) -> QuerySet[ImportJob]:
    """Newest first."""
    return scoped(ImportJob, environment).order_by("-created_at", "-id")


def import_job_latest(environment: Environment) -> ImportJob | None:
    return import_jobs(environment).first()


def imported_subscriptions(
    environment: Environment, *, customer_id: uuid.UUID | None = None, status: str | None = None
) -> QuerySet[ImportedSubscription]:
    """With their customers (one join), newest Stripe start first."""
    rows = scoped(ImportedSubscription, environment).select_related("customer")
    if customer_id is not None:
        rows = rows.filter(customer_id=customer_id)
    if status is not None:
        rows = rows.filter(status=status)
    return rows.order_by("-started_at", "-id")
