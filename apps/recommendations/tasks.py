"""Celery tasks of the recommendations: ids in, idempotent, safe to retry."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from apps.accounts.models import Environment

from .services import compute_run_create, compute_run_execute


@shared_task
def compute_recommendations_run(*, environment_id: str, run_id: str) -> str | None:
    """Run one queued compute (``POST /api/recommendations/compute``, the nightly sweep);
    a run already claimed is left alone. The run's status at the end."""
    environment = Environment.objects.filter(pk=environment_id).first()
    if environment is None:
        return None
    run = compute_run_execute(environment=environment, run_id=run_id)
    return run.status if run is not None else None


@shared_task
def compute_all_recommendations() -> int:
    """Nightly: a compute run for every environment over the default window (the last 30
    days), each a task of its own. The number of runs queued."""
    now = timezone.now()
    queued = 0
    for environment in Environment.objects.order_by("pk").iterator(chunk_size=500):
        run = compute_run_create(
            environment=environment, start=None, end=None, requested_by="schedule", now=now
        )
        compute_recommendations_run.delay(environment_id=str(environment.pk), run_id=str(run.pk))
        queued += 1
    return queued
