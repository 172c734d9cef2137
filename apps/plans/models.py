"""Plans (what a customer subscribes to) and their pricing rules, one per plan x feature.

A plan is created ``draft``, becomes ``active`` (subscribable; its commercial
terms frozen) and finally ``archived`` (no new subscriptions; existing ones go
on). Prices are in the plan's ``currency``, in major units (dollars), exact.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import models
from django.utils import timezone

from apps.core.money import decimal_str
from apps.core.tenancy import EnvironmentOwned

from . import pricing

# DECIMAL(24, 12): 12 digits either side of the point, as for event amounts.
DIGITS = 24
PLACES = 12


class Plan(EnvironmentOwned):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        ARCHIVED = "archived", "Archived"

    class Interval(models.IntegerChoices):
        MONTHLY = 1, "Monthly"
        ANNUAL = 12, "Annual"

    class BillingTiming(models.TextChoices):
        IN_ADVANCE = "in_advance", "Billed in advance"
        IN_ARREARS = "in_arrears", "Billed in arrears"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key = models.CharField(max_length=128)
    name = models.CharField(max_length=150)
    description = models.TextField(blank=True, default="")
    # The base (flat) fee per billing period, in ``currency`` major units.
    price_amount = models.DecimalField(max_digits=DIGITS, decimal_places=PLACES, default=Decimal(0))
    currency = models.CharField(max_length=3, default="USD")
    interval_months = models.PositiveSmallIntegerField(
        choices=Interval.choices, default=Interval.MONTHLY
    )
    billing_timing = models.CharField(
        max_length=10, choices=BillingTiming.choices, default=BillingTiming.IN_ADVANCE
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    metadata = models.JSONField(default=dict, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "key"], name="plan_env_key_unique"),
            models.CheckConstraint(
                condition=models.Q(price_amount__gte=0), name="plan_price_non_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(interval_months__in=[1, 12]), name="plan_interval_known"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["draft", "active", "archived"]),
                name="plan_status_known",
            ),
        ]
        indexes = [
            models.Index(
                fields=["environment", "status", "created_at", "id"], name="plan_env_status_idx"
            )
        ]

    def __str__(self) -> str:
        return self.key

    @property
    def terms_frozen(self) -> bool:
        """Active and archived plans keep their commercial terms: change them with a new plan."""
        return self.status != self.Status.DRAFT

    @property
    def monthly_price(self) -> Decimal:
        """The base price per month, to compare plans of different intervals (exact)."""
        return self.price_amount / self.interval_months


class PlanFeatureRule(EnvironmentOwned):
    """How one feature is priced (and capped) on one plan.

    ``tiers`` holds ``[{"upTo": "1000" | null, "pricePerUnit": "0.002", "flatFee": "0"}]``
    with decimal strings, so amounts stay exact in JSON.
    """

    class Model(models.TextChoices):
        INCLUDED = pricing.PricingModel.INCLUDED.value, "Included (access only)"
        PER_UNIT = pricing.PricingModel.PER_UNIT.value, "Per unit"
        GRADUATED = pricing.PricingModel.GRADUATED.value, "Graduated tiers"
        VOLUME = pricing.PricingModel.VOLUME.value, "Volume tiers"
        PACKAGE = pricing.PricingModel.PACKAGE.value, "Package (per block of units)"

    class ResetInterval(models.TextChoices):
        BILLING_PERIOD = "billing_period", "Each billing period"
        DAY = "day", "Each day (UTC)"
        WEEK = "week", "Each ISO week (Monday, UTC)"
        MONTH = "month", "Each calendar month (UTC)"
        NEVER = "never", "Never (counts from the subscription start)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="rules")
    feature = models.ForeignKey("features.Feature", on_delete=models.PROTECT, related_name="+")
    is_enabled = models.BooleanField(default=True)
    model = models.CharField(max_length=10, choices=Model.choices, default=Model.INCLUDED)
    # per_unit: price per unit; package: price per block of ``package_size`` units.
    unit_price = models.DecimalField(
        max_digits=DIGITS, decimal_places=PLACES, null=True, blank=True
    )
    package_size = models.PositiveBigIntegerField(null=True, blank=True)
    tiers = models.JSONField(default=list, blank=True)
    # Usage cap per reset window (units); null = no cap.
    max_usage = models.DecimalField(max_digits=DIGITS, decimal_places=PLACES, null=True, blank=True)
    reset_interval = models.CharField(
        max_length=14, choices=ResetInterval.choices, default=ResetInterval.BILLING_PERIOD
    )
    # Price per unit beyond ``max_usage``; null with a cap = a hard cap.
    overage_unit_price = models.DecimalField(
        max_digits=DIGITS, decimal_places=PLACES, null=True, blank=True
    )
    # Credit backing (used by the credits app): usage draws ``credits_per_unit`` credits
    # per unit from the customer's pool of this denomination. Both or neither.
    credit_denomination = models.CharField(max_length=32, blank=True, default="")
    credits_per_unit = models.DecimalField(
        max_digits=DIGITS, decimal_places=PLACES, null=True, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "plan", "feature"], name="planrule_plan_feature_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(package_size__isnull=True) | models.Q(package_size__gte=1),
                name="planrule_package_size_positive",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(credit_denomination="", credits_per_unit__isnull=True)
                    | (~models.Q(credit_denomination="") & models.Q(credits_per_unit__gt=0))
                ),
                name="planrule_credit_backing_complete",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan_id}:{self.feature_id} ({self.model})"

    def pricing_rule(self) -> pricing.Rule:
        """The pure rule :mod:`apps.plans.pricing` computes charges with."""
        return pricing.Rule(
            model=pricing.PricingModel(self.model),
            unit_price=self.unit_price,
            package_size=self.package_size,
            tiers=tiers_from_json(self.tiers),
            max_usage=self.max_usage,
            overage_unit_price=self.overage_unit_price,
        )

    @property
    def is_credit_backed(self) -> bool:
        return bool(self.credit_denomination)


def tiers_from_json(raw: list[dict[str, str | None]]) -> tuple[pricing.Tier, ...]:
    return tuple(
        pricing.Tier(
            up_to=None if tier.get("upTo") is None else Decimal(str(tier["upTo"])),
            unit_price=Decimal(str(tier["pricePerUnit"])),
            flat_fee=Decimal(str(tier.get("flatFee") or 0)),
        )
        for tier in raw
    )


def tiers_to_json(tiers: tuple[pricing.Tier, ...]) -> list[dict[str, str | None]]:
    return [
        {
            "upTo": None if tier.up_to is None else decimal_str(tier.up_to),
            "pricePerUnit": decimal_str(tier.unit_price),
            "flatFee": decimal_str(tier.flat_fee),
        }
        for tier in tiers
    ]
