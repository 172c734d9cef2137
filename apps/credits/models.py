"""Credits: models (denominations), plan allocations, pools, grants, the ledger,
effective-dated weights and the price book.

Invariants (kept by :mod:`apps.credits.services`, under the pool's row lock):

* ``CreditTransaction`` is an append-only ledger per pool: entries are numbered
  by ``sequence`` (1, 2, ...), ``balance_after = balance_before + amount`` (a
  check constraint), each entry's ``balance_before`` is the previous entry's
  ``balance_after``, and ``CreditPool.balance`` is the last ``balance_after``,
  i.e. the sum of every entry. A database trigger refuses UPDATE on ledger rows.
* Spendable credits live on grants (``remaining``). When the balance is not
  negative it equals the sum of the remaining credits of the pool's grants.
  Only a soft-limit pool goes negative (the part of a deduction no grant could
  back is its ``unbacked`` amount, a debt); while it is negative, no grant has
  anything remaining, and the next credits that arrive pay the debt first.
* A hard-limit pool never goes below zero (a check constraint on the pool).
* Weights and prices are published for a future instant and never updated
  (a trigger refuses UPDATE); a weight not yet in force may be withdrawn.
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.core.tenancy import EnvironmentOwned, unconstrained_environment

from .amounts import (
    PRICE_DECIMAL_PLACES,
    PRICE_MAX_DIGITS,
    UNITS_DECIMAL_PLACES,
    UNITS_MAX_DIGITS,
    WEIGHT_DECIMAL_PLACES,
    WEIGHT_MAX_DIGITS,
    credit_field_kwargs,
)

DENOMINATION_MAX_LENGTH = 32


class RolloverPolicy(models.TextChoices):
    NONE = "none", "Unused plan credits lapse at period end"
    FULL = "full", "Unused plan credits carry over"
    CAPPED = "capped", "Unused plan credits carry over up to a cap"


class GrantType(models.TextChoices):
    PLAN = "plan", "Included in a plan, per period"
    PURCHASED = "purchased", "Bought"
    PROMOTIONAL = "promotional", "Promotional"
    REFUND = "refund", "Refund"
    MANUAL = "manual", "Manual"
    ROLLOVER = "rollover", "Carried over from the previous period"


# Lower is spent first. Credits that lapse with the period go first, bought credits last.
DEFAULT_PRIORITY: dict[str, int] = {
    GrantType.ROLLOVER: 10,
    GrantType.PLAN: 20,
    GrantType.PROMOTIONAL: 30,
    GrantType.REFUND: 40,
    GrantType.MANUAL: 40,
    GrantType.PURCHASED: 50,
}
# Rollover applies to the periodic allowance only; bought and given credits keep their expiry.
ROLLOVER_GRANT_TYPES = (GrantType.PLAN, GrantType.ROLLOVER)


class TransactionType(models.TextChoices):
    GRANT = "grant", "Grant"
    DEDUCTION = "deduction", "Deduction"
    EXPIRATION = "expiration", "Expiration"
    REVERSAL = "reversal", "Reversal of a deduction"
    ADJUSTMENT = "adjustment", "Adjustment"


class WeightMatch(models.TextChoices):
    MODEL = "model", "Weight for this feature and model"
    FEATURE_DEFAULT = "feature_default", "Weight for this feature, any model"
    NONE = "none", "No weight published: one credit per unit"


class CreditModel(EnvironmentOwned):
    """A denomination and its rules. Pools copy the rules when they are created."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=150)
    denomination = models.CharField(max_length=DENOMINATION_MAX_LENGTH)
    description = models.TextField(blank=True, default="")
    hard_limit = models.BooleanField(default=True)
    rollover_policy = models.CharField(
        max_length=8, choices=RolloverPolicy.choices, default=RolloverPolicy.NONE
    )
    # Credits; set exactly when the policy is "capped".
    rollover_cap = models.DecimalField(null=True, blank=True, **credit_field_kwargs())
    # Plan and rollover grants expire this many months after their period starts; null: never.
    grant_expiry_months = models.PositiveSmallIntegerField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "denomination"], name="credit_model_env_denom_unique"
            ),
            models.CheckConstraint(
                condition=(Q(rollover_policy="capped") & Q(rollover_cap__gte=0))
                | (~Q(rollover_policy="capped") & Q(rollover_cap__isnull=True)),
                name="credit_model_cap_iff_capped",
            ),
            models.CheckConstraint(
                condition=Q(grant_expiry_months__isnull=True) | Q(grant_expiry_months__gte=1),
                name="credit_model_expiry_months_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.denomination


class PlanCreditAllocation(EnvironmentOwned):
    """A plan grants ``credit_amount`` credits of a model's denomination each period.

    The plan is named by its key (``plan_key``) so this app does not depend on
    ``apps.plans``; the subscriptions side calls
    :func:`apps.credits.services.credits_grant_plan_period` at each period start.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plan_key = models.CharField(max_length=128)
    credit_model = models.ForeignKey(CreditModel, on_delete=models.CASCADE, related_name="+")
    credit_amount = models.DecimalField(**credit_field_kwargs())
    # Overrides the model's grant_expiry_months when set.
    grant_expiry_months = models.PositiveSmallIntegerField(null=True, blank=True)
    priority = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "plan_key", "credit_model"],
                name="credit_alloc_plan_model_unique",
            ),
            models.CheckConstraint(
                condition=Q(credit_amount__gt=0), name="credit_alloc_amount_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan_key}: {self.credit_amount}"


class CreditPool(EnvironmentOwned):
    """One customer's credits of one denomination, with a cached balance and totals."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    credit_model = models.ForeignKey(CreditModel, on_delete=models.RESTRICT, related_name="+")
    denomination = models.CharField(max_length=DENOMINATION_MAX_LENGTH)
    name = models.CharField(max_length=150, blank=True, default="")
    hard_limit = models.BooleanField(default=True)
    rollover_policy = models.CharField(
        max_length=8, choices=RolloverPolicy.choices, default=RolloverPolicy.NONE
    )
    rollover_cap = models.DecimalField(null=True, blank=True, **credit_field_kwargs())
    grant_expiry_months = models.PositiveSmallIntegerField(null=True, blank=True)
    # The sum of the ledger; the totals are per transaction type (all non-negative).
    balance = models.DecimalField(**credit_field_kwargs(default=0))
    total_granted = models.DecimalField(**credit_field_kwargs(default=0))
    total_consumed = models.DecimalField(**credit_field_kwargs(default=0))
    total_expired = models.DecimalField(**credit_field_kwargs(default=0))
    total_reversed = models.DecimalField(**credit_field_kwargs(default=0))
    # Net of adjustments (rollover moves credits between grants with adjustments netting to 0).
    total_adjusted = models.DecimalField(**credit_field_kwargs(default=0))
    # Sequence number of the last ledger entry.
    last_sequence = models.PositiveBigIntegerField(default=0)
    # The plan period the pool's plan credits belong to (set by plan grants).
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    # Rollover has been applied for every period ending at or before this instant.
    rolled_over_through = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "customer", "denomination"],
                name="credit_pool_customer_denom_unique",
            ),
            models.CheckConstraint(
                condition=Q(hard_limit=False) | Q(balance__gte=0),
                name="credit_pool_hard_limit_not_negative",
            ),
        ]
        indexes = [
            models.Index(
                fields=["current_period_end"],
                name="credit_pool_period_end_idx",
                condition=Q(current_period_end__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.denomination} pool of {self.customer_id}"


class CreditGrant(EnvironmentOwned):
    """Credits added to a pool; ``remaining`` is what is left to spend.

    No index mentions ``remaining`` or ``closed_at`` (not even in a condition): so a
    deduction's update of the grant it draws is a HOT update, written in place without
    new index entries. Every credit-backed event draws a grant; with a partial index
    on ``remaining > 0`` each draw added an entry to each of the grant's indexes, and
    until a vacuum the pool's grant read walked them all.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed as the spend index's first column.
    pool = models.ForeignKey(
        CreditPool, on_delete=models.CASCADE, related_name="grants", db_index=False
    )
    grant_type = models.CharField(max_length=12, choices=GrantType.choices)
    amount = models.DecimalField(**credit_field_kwargs())
    remaining = models.DecimalField(**credit_field_kwargs())
    # Lower is spent first; then earliest expiry (none last), then oldest.
    priority = models.PositiveIntegerField(default=40)
    expires_at = models.DateTimeField(null=True, blank=True)
    granted_at = models.DateTimeField(default=timezone.now)
    # Idempotency: one grant per (pool, type, source_ref) when source_ref is given.
    source_ref = models.CharField(max_length=255, blank=True, default="")
    # Purchased credits: the price paid per credit (stamped from the price book if absent).
    unit_price = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES, null=True, blank=True
    )
    currency = models.CharField(max_length=3, blank=True, default="")
    description = models.CharField(max_length=500, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    # Set when a rollover consolidated this grant into a rollover grant; nothing is left.
    closed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=80, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["pool", "grant_type", "source_ref"],
                condition=~Q(source_ref=""),
                name="credit_grant_source_unique",
            ),
            models.CheckConstraint(
                condition=Q(amount__gt=0)
                & Q(remaining__gte=0)
                & Q(remaining__lte=models.F("amount")),
                name="credit_grant_remaining_in_range",
            ),
        ]
        indexes = [
            # Spend order of a pool's grants (those spent out are filtered on the row).
            models.Index(
                fields=["pool", "priority", "expires_at", "granted_at"],
                name="credit_grant_spend_idx",
            ),
            # The expiry task: grants with an expiry.
            models.Index(
                fields=["expires_at"],
                name="credit_grant_expiry_idx",
                condition=Q(expires_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.grant_type} {self.amount} ({self.remaining} left)"

    def is_live(self, at: dt.datetime) -> bool:
        """Whether the grant's credits may still be spent at ``at``."""
        return self.closed_at is None and (self.expires_at is None or self.expires_at > at)


class CreditTransaction(EnvironmentOwned):
    """One ledger entry. Signed ``amount``: grants and reversals add, the rest take."""

    # Implied by the pool, which has the constraint.
    environment = unconstrained_environment(models.CASCADE)
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed as the first column of (pool, sequence).
    pool = models.ForeignKey(
        CreditPool, on_delete=models.CASCADE, related_name="transactions", db_index=False
    )
    sequence = models.PositiveBigIntegerField()
    transaction_type = models.CharField(max_length=10, choices=TransactionType.choices)
    amount = models.DecimalField(**credit_field_kwargs())
    balance_before = models.DecimalField(**credit_field_kwargs())
    balance_after = models.DecimalField(**credit_field_kwargs())
    # The grant an entry is about (grant, expiration, adjustment); deductions list theirs
    # in CreditConsumption.
    grant = models.ForeignKey(
        CreditGrant,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # credit_tx_grant_idx: usage deductions (most entries) have none
    )
    reversed_transaction = models.OneToOneField(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="reversal"
    )
    # Per pool, when given: a replay returns the first entry.
    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    # Deductions for usage: the event and how its credits were computed.
    event_ref = models.CharField(max_length=255, blank=True, default="")
    feature = models.ForeignKey(
        "features.Feature",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    model = models.CharField(max_length=255, blank=True, default="")
    units = models.DecimalField(
        max_digits=UNITS_MAX_DIGITS, decimal_places=UNITS_DECIMAL_PLACES, null=True, blank=True
    )
    credits_per_unit = models.DecimalField(
        max_digits=WEIGHT_MAX_DIGITS, decimal_places=WEIGHT_DECIMAL_PLACES, null=True, blank=True
    )
    weight_id = models.UUIDField(null=True, blank=True)
    weight_match = models.CharField(
        max_length=16, choices=WeightMatch.choices, blank=True, default=""
    )
    # Deductions: credits asked for; what a hard limit refused; what no grant backed (soft).
    requested = models.DecimalField(null=True, blank=True, **credit_field_kwargs())
    shortfall = models.DecimalField(**credit_field_kwargs(default=0))
    unbacked = models.DecimalField(**credit_field_kwargs(default=0))
    description = models.CharField(max_length=500, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    created_by = models.CharField(max_length=80, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["pool", "sequence"], name="credit_tx_pool_seq_unique"),
            models.UniqueConstraint(
                fields=["pool", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="credit_tx_idempotency_unique",
            ),
            models.CheckConstraint(
                condition=Q(balance_after=models.F("balance_before") + models.F("amount")),
                name="credit_tx_balance_arithmetic",
            ),
            models.CheckConstraint(
                condition=(Q(transaction_type="grant") & Q(amount__gt=0))
                | (Q(transaction_type="deduction") & Q(amount__lte=0))
                | (Q(transaction_type="expiration") & Q(amount__lt=0))
                | (Q(transaction_type="reversal") & Q(amount__gte=0))
                | (Q(transaction_type="adjustment") & ~Q(amount=0)),
                name="credit_tx_amount_sign",
            ),
            models.CheckConstraint(
                condition=Q(shortfall__gte=0) & Q(unbacked__gte=0),
                name="credit_tx_shortfall_unbacked_positive",
            ),
        ]
        indexes = [
            models.Index(fields=["pool", "created_at"], name="credit_tx_pool_time_idx"),
            models.Index(
                fields=["grant"], name="credit_tx_grant_idx", condition=Q(grant__isnull=False)
            ),
            models.Index(
                fields=["environment", "event_ref"],
                name="credit_tx_event_idx",
                condition=~Q(event_ref=""),
            ),
            # Soft pools in debt: the deductions some of whose credits no grant backs yet.
            models.Index(
                fields=["pool", "sequence"],
                name="credit_tx_unbacked_idx",
                condition=Q(unbacked__gt=0),
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.transaction_type} {self.amount}"


class CreditConsumption(EnvironmentOwned):
    """Which grants a deduction drew from (at the time, or later when a debt was paid)."""

    # Implied by the entry's pool.
    environment = unconstrained_environment(models.CASCADE)
    id = models.BigAutoField(primary_key=True)
    transaction = models.ForeignKey(
        CreditTransaction, on_delete=models.CASCADE, related_name="consumptions"
    )
    grant = models.ForeignKey(CreditGrant, on_delete=models.CASCADE, related_name="+")
    amount = models.DecimalField(**credit_field_kwargs())
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="credit_consumption_amount_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount} from {self.grant_id}"


class CreditWeight(EnvironmentOwned):
    """Credits per usage unit of a feature (optionally of one model), from an instant on."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    feature = models.ForeignKey("features.Feature", on_delete=models.CASCADE, related_name="+")
    # "" = every model of the feature; otherwise matched exactly against the event's model.
    model = models.CharField(max_length=255, blank=True, default="")
    credits_per_unit = models.DecimalField(
        max_digits=WEIGHT_MAX_DIGITS, decimal_places=WEIGHT_DECIMAL_PLACES
    )
    effective_from = models.DateTimeField()
    batch_id = models.UUIDField(default=uuid.uuid4)
    created_by = models.CharField(max_length=80, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "feature", "model", "effective_from"],
                name="credit_weight_instant_unique",
            ),
            models.CheckConstraint(
                condition=Q(credits_per_unit__gt=0) & Q(credits_per_unit__lte=1_000_000),
                name="credit_weight_in_range",
            ),
        ]
        indexes = [
            models.Index(fields=["environment", "effective_from"], name="credit_weight_env_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.credits_per_unit}/unit from {self.effective_from:%Y-%m-%d %H:%M}"


class CreditPrice(EnvironmentOwned):
    """The price book: what one credit of a denomination costs, from an instant on."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    denomination = models.CharField(max_length=DENOMINATION_MAX_LENGTH)
    currency = models.CharField(max_length=3, default="USD")
    price_per_credit = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES
    )
    effective_from = models.DateTimeField()
    batch_id = models.UUIDField(default=uuid.uuid4)
    created_by = models.CharField(max_length=80, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "denomination", "effective_from"],
                name="credit_price_instant_unique",
            ),
            models.CheckConstraint(
                condition=Q(price_per_credit__gt=0), name="credit_price_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.denomination}: {self.price_per_credit} {self.currency}"
