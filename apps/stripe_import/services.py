"""Writes of the Stripe import: start a run, and settle one (completed or failed).

An import is started in an environment whose Stripe mode is ``import`` and that has a
Stripe key connected; one runs at a time per environment (the partial unique index
``stripe_import_one_active_job``). A job still marked running whose counters have not
moved for :data:`STALE_AFTER` lost its worker: starting again fails it and starts anew.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.billing.models import StripeMode
from apps.billing.services import billing_settings_get
from apps.core.errors import Conflict
from apps.core.tenancy import scoped
from apps.stripe_sync.models import StripeConnection

from . import errors
from .models import ImportJob

if TYPE_CHECKING:
    from apps.accounts.audit import Actor
    from apps.accounts.models import Environment

STALE_AFTER = dt.timedelta(minutes=15)


def _actor_label(actor: Actor) -> str:
    if actor.user is not None:
        return f"user:{actor.user.pk}"
    if actor.api_key_id is not None:
        return f"key:{actor.api_key_id}"
    return "system"


def _running(job: ImportJob) -> Conflict:
    return Conflict(
        "A Stripe import is already running in this environment.",
        code=errors.IMPORT_RUNNING,
        extra={"jobId": str(job.pk)},
    )


def stripe_import_check(environment: Environment) -> None:
    """409 unless the environment may import: mode ``import`` and a key connected."""
    if billing_settings_get(environment).stripe_mode != StripeMode.IMPORT:
        raise Conflict(
            "The Stripe mode of this environment is not IMPORT: set stripeMode to IMPORT "
            "in the billing settings first.",
            code=errors.STRIPE_MODE_NOT_IMPORT,
        )
    if not scoped(StripeConnection, environment.pk).exists():
        raise Conflict(
            "Stripe is not connected in this environment: connect a key first.",
            code=errors.STRIPE_NOT_CONNECTED,
        )


@transaction.atomic
def stripe_import_start(*, environment: Environment, actor: Actor) -> ImportJob:
    """A pending job, and its run enqueued once the transaction commits.

    409 ``stripe_mode_not_import`` / ``stripe_not_connected`` when the environment may
    not import; 409 ``stripe_import_running`` (with ``jobId``) while one runs.
    """
    from .tasks import run_stripe_import  # tasks import the importer, not this module

    stripe_import_check(environment)
    now = timezone.now()
    active = (
        scoped(ImportJob.objects.select_for_update(), environment.pk)
        .filter(status__in=ImportJob.ACTIVE)
        .first()
    )
    if active is not None:
        if active.updated_at > now - STALE_AFTER:
            raise _running(active)
        stripe_import_fail(job=active, error="The worker running this import stopped.")
    try:
        with transaction.atomic():
            job = ImportJob.objects.create(
                environment=environment, requested_by=_actor_label(actor), created_at=now
            )
    except IntegrityError:
        # Another start won the race for the one active job.
        other = scoped(ImportJob, environment.pk).filter(status__in=ImportJob.ACTIVE).first()
        if other is None:
            raise
        raise _running(other) from None
    transaction.on_commit(lambda: run_stripe_import.delay(str(job.pk)), robust=True)
    return job


def stripe_import_fail(*, job: ImportJob, error: str) -> ImportJob:
    """Mark an unfinished job failed with ``error`` (a finished job stays as it is)."""
    now = timezone.now()
    ImportJob.objects.filter(pk=job.pk, status__in=ImportJob.ACTIVE).update(
        status=ImportJob.Status.FAILED, error=error[:2000], finished_at=now, updated_at=now
    )
    job.refresh_from_db()
    return job
