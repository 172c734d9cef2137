"""Subscriptions (customer x plan) and their plan changes.

A subscription's billing periods are anchored on ``billing_anchor`` (00:00 UTC of
the day it started, or of the day its trial ended) and last ``interval_months``;
see :mod:`apps.subscriptions.periods`. ``current_period_start``/``_end`` hold the
period in force; ``subscription_advance_periods`` moves them on.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from apps.core.tenancy import EnvironmentOwned


class Subscription(EnvironmentOwned):
    class Status(models.TextChoices):
        TRIALING = "trialing", "Trialing"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Past due"
        CANCELLED = "cancelled", "Cancelled"

    class CancelMode(models.TextChoices):
        END_OF_PERIOD = "end_of_period", "At the end of the period"
        IMMEDIATE = "immediate", "Immediately"

    # Not cancelled: the subscription is in force (a past-due one too, until billing ends it).
    LIVE_STATUSES = (Status.TRIALING, Status.ACTIVE, Status.PAST_DUE)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.PROTECT, related_name="subscriptions"
    )
    plan = models.ForeignKey("plans.Plan", on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.ACTIVE)
    # True when the organization allowed one subscription per customer at creation: the
    # partial unique index below then holds at most one live exclusive row per customer.
    exclusive = models.BooleanField(default=True)
    started_at = models.DateTimeField()
    trial_ends_at = models.DateTimeField(null=True, blank=True)
    billing_anchor = models.DateTimeField()
    interval_months = models.PositiveSmallIntegerField()
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    cancel_mode = models.CharField(
        max_length=13, choices=CancelMode.choices, blank=True, default=""
    )
    # When a scheduled or immediate cancellation takes (took) effect.
    cancel_at = models.DateTimeField(null=True, blank=True)
    # When the cancellation was asked for.
    cancelled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    grace_period_days = models.PositiveSmallIntegerField(default=3)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "customer"],
                condition=models.Q(exclusive=True, status__in=["trialing", "active", "past_due"]),
                name="subscription_one_live_per_customer",
            ),
            models.CheckConstraint(
                condition=models.Q(current_period_end__gte=models.F("current_period_start")),
                name="subscription_period_ordered",
            ),
            models.CheckConstraint(
                condition=models.Q(interval_months__in=[1, 12]),
                name="subscription_interval_known",
            ),
        ]
        indexes = [
            models.Index(
                fields=["environment", "customer", "status"], name="subscription_env_cust_idx"
            ),
            models.Index(
                fields=["environment", "created_at", "id"], name="subscription_env_created_idx"
            ),
            # The period job's scan: live subscriptions whose period has ended.
            models.Index(
                fields=["current_period_end"],
                condition=models.Q(status__in=["trialing", "active", "past_due"]),
                name="subscription_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} on {self.plan_id} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in self.LIVE_STATUSES


class SubscriptionChange(EnvironmentOwned):
    """A plan switch: done at once (``completed``) or scheduled for the period end (``pending``).

    Immediate switches are recorded too, so the billing cycle can prorate them.
    """

    class Type(models.TextChoices):
        UPGRADE = "upgrade", "Upgrade"
        DOWNGRADE = "downgrade", "Downgrade"

    class Timing(models.TextChoices):
        NOW = "now", "Now"
        PERIOD_END = "period_end", "At the end of the period"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="changes")
    change_type = models.CharField(max_length=9, choices=Type.choices)
    timing = models.CharField(max_length=10, choices=Timing.choices)
    status = models.CharField(max_length=9, choices=Status.choices)
    from_plan = models.ForeignKey("plans.Plan", on_delete=models.PROTECT, related_name="+")
    to_plan = models.ForeignKey("plans.Plan", on_delete=models.PROTECT, related_name="+")
    # The period the switch happened in (for proration): bounds as they were when asked.
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    effective_at = models.DateTimeField()
    requested_at = models.DateTimeField(default=timezone.now)
    fulfilled_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "subscription"],
                condition=models.Q(status="pending"),
                name="subscriptionchange_one_pending",
            )
        ]
        indexes = [
            models.Index(fields=["subscription", "requested_at"], name="subscriptionchange_sub_idx")
        ]

    def __str__(self) -> str:
        return f"{self.change_type} {self.from_plan_id} -> {self.to_plan_id} ({self.status})"
