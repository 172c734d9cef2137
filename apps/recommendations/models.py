"""Findings (what to change, the money at stake), their compute runs, and the table of
comparable models the cheaper-model advice draws its candidates from (docs/recommendations.md)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import models
from django.utils import timezone

from apps.core.tenancy import EnvironmentOwned

# USD per month, rounded to the cent once (services.finding_stake).
STAKE_DIGITS, STAKE_PLACES = 20, 2
# The namespace of the findings' stable ids: uuid5(namespace, "environment|kind|subject").
FINDING_NAMESPACE = uuid.UUID("5b0f6a52-7c1e-4d8e-9a3f-2f1d6c9b7e41")


def finding_id(environment_id: object, kind: str, subject: str) -> uuid.UUID:
    """The stable id of a finding: the same environment, kind and subject give the same id
    on every recompute (and on every machine)."""
    return uuid.uuid5(FINDING_NAMESPACE, f"{environment_id}|{kind}|{subject}")


class Recommendation(EnvironmentOwned):
    """One finding of one environment, kept across recomputes (its id is
    :func:`finding_id`): the latest figures, and the operator's decision about it."""

    class Kind(models.TextChoices):
        CUSTOMER_MARGIN = "customer_margin", "Customer under the target margin"
        FEATURE_MARGIN = "feature_margin", "Feature under the target margin"
        CHEAPER_MODEL = "cheaper_model", "A cheaper model for the same feature"
        UNPRICED_MODEL = "unpriced_model", "A model without a price"
        PLAN_PRICE = "plan_price", "A plan price that reaches the target margin"
        FREE_PLAN_OUTLIER = "free_plan_outlier", "Free-plan customers above the p90 of cost"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        SNOOZED = "snoozed", "Snoozed"
        DISMISSED = "dismissed", "Dismissed"
        APPLIED = "applied", "Applied"
        RESOLVED = "resolved", "Resolved"

    class Direction(models.TextChoices):
        SAVE_COST = "save_cost", "Save cost"
        GAIN_REVENUE = "gain_revenue", "Gain revenue"
        PROTECT_MARGIN = "protect_margin", "Protect margin"

    class Confidence(models.TextChoices):
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"

    id = models.UUIDField(primary_key=True, editable=False)  # finding_id(...)
    kind = models.CharField(max_length=24, choices=Kind.choices)
    # What the finding is about, as a stable text key ("customer:cus_a", ...).
    subject = models.CharField(max_length=600)
    title = models.CharField(max_length=300)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.OPEN)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    money_at_stake_monthly = models.DecimalField(  # USD per month
        max_digits=STAKE_DIGITS, decimal_places=STAKE_PLACES
    )
    direction = models.CharField(max_length=14, choices=Direction.choices)
    confidence = models.CharField(max_length=6, choices=Confidence.choices)
    assumptions = models.JSONField(default=list)  # [{"name", "value", "note"}]
    evidence = models.JSONField(default=dict)  # window, event count, top contributors, ...
    action = models.JSONField(default=dict)  # {"type": "simulate" | "price_override", ...}
    # The money at stake (USD per month) when it was dismissed or snoozed: the decision
    # holds until the money at stake reaches twice this.
    decided_at_stake = models.DecimalField(
        max_digits=STAKE_DIGITS, decimal_places=STAKE_PLACES, null=True, blank=True
    )
    # The money at stake when applied (predicted), and the checks 7 and 30 days later.
    applied_at = models.DateTimeField(null=True, blank=True)
    applied_at_stake = models.DecimalField(
        max_digits=STAKE_DIGITS, decimal_places=STAKE_PLACES, null=True, blank=True
    )
    checks = models.JSONField(default=list, blank=True)  # [{"afterDays", "at", "moneyAtStake"}]
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    first_seen_at = models.DateTimeField(default=timezone.now)
    computed_at = models.DateTimeField(default=timezone.now)
    status_changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "kind", "subject"], name="recommendation_one_per_subject"
            ),
            models.CheckConstraint(
                condition=models.Q(money_at_stake_monthly__gte=0),
                name="recommendation_stake_not_negative",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="snoozed") | models.Q(snoozed_until__isnull=False),
                name="recommendation_snooze_has_an_end",
            ),
        ]
        indexes = [
            models.Index(
                fields=["environment", "-money_at_stake_monthly", "id"],
                name="recommendation_rank",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}: {self.money_at_stake_monthly} USD/month"


class ComputeRun(EnvironmentOwned):
    """One computation of an environment's findings (the API's job, the nightly sweep)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.QUEUED)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    steps_total = models.PositiveSmallIntegerField(default=0)
    steps_done = models.PositiveSmallIntegerField(default=0)
    findings = models.PositiveIntegerField(default=0)
    money_at_stake_monthly = models.DecimalField(  # USD per month, open findings
        max_digits=STAKE_DIGITS, decimal_places=STAKE_PLACES, default=Decimal(0)
    )
    error = models.TextField(blank=True, default="")
    requested_by = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["environment", "-created_at"], name="recs_run_recent")]

    def __str__(self) -> str:
        return f"recommendations run {self.pk} ({self.status})"


class DefaultComparableModel(models.Model):
    """A shipped pair "this model can often do the work of that one, for less": the
    defaults every environment starts from (a data migration loads them; each
    environment adds or hides pairs with :class:`ComparableModel`). Not tenant data."""

    from_provider = models.CharField(max_length=64)
    from_model = models.CharField(max_length=200)  # a catalog model id
    to_provider = models.CharField(max_length=64)
    to_model = models.CharField(max_length=200)
    note = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["from_provider", "from_model", "to_provider", "to_model"],
                name="default_comparable_model_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.from_provider}/{self.from_model} -> {self.to_provider}/{self.to_model}"


class ComparableModel(EnvironmentOwned):
    """An environment's own pair: added (``enabled``), or a default hidden (not ``enabled``)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    from_provider = models.CharField(max_length=64)
    from_model = models.CharField(max_length=200)
    to_provider = models.CharField(max_length=64)
    to_model = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True)
    note = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "from_provider", "from_model", "to_provider", "to_model"],
                name="comparable_model_unique",
            )
        ]

    def __str__(self) -> str:
        state = "" if self.enabled else " (hidden)"
        return (
            f"{self.from_provider}/{self.from_model} -> {self.to_provider}/{self.to_model}{state}"
        )
