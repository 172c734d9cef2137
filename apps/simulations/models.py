"""Stored simulations: the inputs, a job's status and progress, and the result."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from apps.core.tenancy import EnvironmentOwned


class Simulation(EnvironmentOwned):
    """One run of a simulation request (docs/simulations.md).

    ``inputs`` is the normalised request and ``inputs_hash`` its SHA-256 (with the
    environment): the same request gives the same hash. ``result_hash`` is the SHA-256 of
    the canonical result JSON: the same inputs over the same data give the same result.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)  # percent, 0..100
    inputs = models.JSONField()
    inputs_hash = models.CharField(max_length=64)
    result = models.JSONField(null=True, blank=True)
    result_hash = models.CharField(max_length=64, blank=True, default="")
    error = models.TextField(blank=True, default="")
    created_by = models.CharField(max_length=80, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["environment", "created_at", "id"], name="simulation_env_created"),
            models.Index(fields=["environment", "inputs_hash"], name="simulation_env_inputs"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__lte=100), name="simulation_progress_percent"
            ),
            models.CheckConstraint(
                condition=models.Q(
                    status__in=["queued", "running", "completed", "failed", "cancelled"]
                ),
                name="simulation_status_known",
            ),
        ]

    def __str__(self) -> str:
        return self.name or str(self.pk)

    @property
    def finished(self) -> bool:
        return self.status in self.FINISHED
