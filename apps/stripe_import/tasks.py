"""Celery task of the Stripe import: takes the job id; safe to run twice and to retry.

A run reads Stripe and upserts what it reads, so running it again (a retry after
Stripe was unreachable, or a duplicate delivery) records the same rows once. A job
that is already completed or failed is left alone. Stripe unreachable: retried with
exponential backoff (:data:`RETRY_DELAYS`), then the job fails; Stripe refusing the
key: the job fails at once with Stripe's message.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.utils import timezone

from apps.core.errors import Conflict

from .importer import StripeRefused, StripeUnavailable, import_run
from .models import ImportJob
from .services import stripe_import_fail

log = logging.getLogger(__name__)

# Seconds before each retry when Stripe cannot be reached.
RETRY_DELAYS = (10, 30, 120, 600)


@shared_task(bind=True, max_retries=len(RETRY_DELAYS), acks_late=True)
def run_stripe_import(self: Any, job_id: str) -> dict[str, Any]:
    from apps.stripe_sync.client import stripe_client

    now = timezone.now()
    # Claim the job: a pending one; or, on a retry of this task, the one it was running.
    # A second delivery of a job that runs elsewhere claims nothing and stops here.
    claimed = ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.PENDING).update(
        status=ImportJob.Status.RUNNING, updated_at=now
    )
    if not claimed and self.request.retries > 0:
        claimed = ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.RUNNING).update(
            updated_at=now
        )
    if not claimed:
        return {"job": job_id, "skipped": True}
    job = ImportJob.objects.select_related("environment").get(pk=job_id)
    try:
        client = stripe_client(job.environment)
        job = import_run(job, client)
    except Conflict as exc:  # disconnected meanwhile
        job = stripe_import_fail(job=job, error=exc.message)
    except StripeRefused as exc:
        job = stripe_import_fail(job=job, error=str(exc))
    except StripeUnavailable as exc:
        retries = self.request.retries
        if retries >= len(RETRY_DELAYS):
            job = stripe_import_fail(job=job, error=f"Stripe could not be reached: {exc}")
        else:
            log.warning("stripe import %s: Stripe unavailable (%s), retrying", job_id, exc)
            raise self.retry(exc=exc, countdown=RETRY_DELAYS[retries]) from exc
    except Exception as exc:
        stripe_import_fail(job=job, error=f"Unexpected error: {type(exc).__name__}")
        raise
    return {"job": job_id, "status": job.status, "total": job.total, "processed": job.processed}
