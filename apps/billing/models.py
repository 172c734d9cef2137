"""Invoices: one per subscription and billing period, numbered per environment without gaps.

* An :class:`Invoice` holds integer minor units of its currency (``total_minor``),
  the sum of its lines' ``amount_minor``. Each :class:`InvoiceLine` keeps its
  exact (unrounded) amount beside the rounded one: the one rounding helper,
  :func:`apps.core.money.to_minor_units`, runs once per line and never again.
* ``invoice_one_per_subscription_period`` (a partial unique index) makes the
  period's invoice exist once however often, or concurrently, the cycle runs.
  Plan-change adjustments are unique per plan change, the cancellation credit
  note per subscription.
* Numbers come from :class:`InvoiceSequence`, one counter row per environment
  taken ``FOR UPDATE`` in the transaction that inserts the invoice: a rollback
  gives the number back, so live numbering has no gaps.
* :class:`SubscriptionBilling` is the cycle's cursor: every period boundary of
  the subscription up to ``billed_through`` has been invoiced.
* Usage lines record the usage they billed (``units_total``,
  ``units_beyond_cap``, ``units_uncovered``) so a later close can see late events
  and bill the difference as an adjustment line; after a subscription's last
  invoice, on a late-usage invoice of its own (one per subscription and UTC day:
  ``invoice_one_late_usage_per_day``).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.core.tenancy import EnvironmentOwned

# Exact amounts: 30 digits after the point (a prorated price is a fraction of seconds).
EXACT_DIGITS = 60
EXACT_PLACES = 30
UNITS_DIGITS = 38
UNITS_PLACES = 12


class StripeMode(models.TextChoices):
    NONE = "none", "None: Tanso bills; payments are marked paid by API"
    PASS_THROUGH = "pass_through", "Pass-through: invoices are pushed to Stripe for collection"
    STRIPE_DRIVEN = "stripe_driven", "Stripe-driven: Stripe Billing invoices, mirrored back"
    IMPORT = "import", "Read-only import of Stripe revenue"


class BillingSettings(EnvironmentOwned):
    """Billing options of one environment (a missing row means the defaults)."""

    # Days from issue to the due date (net terms); 0 = due when issued.
    payment_terms_days = models.PositiveSmallIntegerField(default=0)
    # Days after the due date before an unpaid invoice is past due. Null: each
    # subscription's own ``grace_period_days`` (the subscribe call's gracePeriod, default 3).
    grace_period_days = models.PositiveSmallIntegerField(null=True, blank=True)
    stripe_mode = models.CharField(max_length=13, choices=StripeMode.choices, default="none")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment"], name="billing_settings_one_per_env")
        ]

    def __str__(self) -> str:
        return f"billing settings of {self.environment_id}"


class InvoiceSequence(EnvironmentOwned):
    """The environment's invoice counter: the last number handed out."""

    last_number = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment"], name="invoice_sequence_one_per_env")
        ]

    def __str__(self) -> str:
        return f"{self.environment_id}: {self.last_number}"


class SubscriptionBilling(EnvironmentOwned):
    """The billing cycle's cursor for one subscription."""

    subscription = models.OneToOneField(
        "subscriptions.Subscription",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="billing_state",
    )
    # Every period boundary (a period's start or end) up to this instant is invoiced.
    billed_through = models.DateTimeField()
    # The next boundary to invoice (None: the subscription ended and is fully billed).
    # Earlier boundaries appear only by a cancellation or a re-anchoring plan change,
    # which the scan sees on the subscription row itself.
    next_boundary_at = models.DateTimeField(null=True, blank=True)
    # An ended subscription's usage was last compared with its invoices at this instant
    # (the late-usage pass looks at most once per UTC day; None: not yet).
    late_usage_checked_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.subscription_id} billed through {self.billed_through:%Y-%m-%d %H:%M}"


class Invoice(EnvironmentOwned):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending (issued, not yet due)"
        DUE = "due", "Due"
        PAST_DUE = "past_due", "Past due"
        PAID = "paid", "Paid"
        VOID = "void", "Void"

    class Type(models.TextChoices):
        REGULAR = "regular", "Regular"
        IN_ADVANCE_INITIAL = "in_advance_initial", "First invoice of an in-advance plan"
        ADJUSTMENT = "adjustment", "Adjustment"
        CREDIT = "credit", "Credit note"

    class Reason(models.TextChoices):
        PERIOD = "period", "A billing period"
        FINAL = "final", "Usage of the last period of an ended subscription"
        PLAN_CHANGE = "plan_change", "Proration of a plan change"
        CANCELLATION = "cancellation", "Unused part of a period paid in advance"
        LATE_USAGE = "late_usage", "Usage that arrived after the subscription's last invoice"
        ONE_OFF = "one_off", "One-off charges issued on demand"

    OPEN_STATUSES = (Status.PENDING, Status.DUE, Status.PAST_DUE)
    PERIOD_TYPES = (Type.REGULAR, Type.IN_ADVANCE_INITIAL)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    number = models.CharField(max_length=32)
    sequence = models.PositiveBigIntegerField()
    subscription = models.ForeignKey(
        "subscriptions.Subscription", on_delete=models.PROTECT, related_name="invoices"
    )
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.PROTECT, related_name="invoices"
    )
    plan_change = models.ForeignKey(
        "subscriptions.SubscriptionChange",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    # A credit note: the invoice whose unused part it gives back.
    credited_invoice = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="credit_notes"
    )
    type = models.CharField(max_length=18, choices=Type.choices)
    reason = models.CharField(max_length=12, choices=Reason.choices)
    status = models.CharField(max_length=8, choices=Status.choices)
    currency = models.CharField(max_length=3)
    # The period the invoice is for: the billed period (in advance: the period starting;
    # in arrears: the period ended); a final invoice has start = end = the subscription's end.
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    # Sum of the lines' amount_minor (integer minor units of ``currency``).
    total_minor = models.BigIntegerField(default=0)
    issued_at = models.DateTimeField()
    due_at = models.DateTimeField()
    grace_period_days = models.PositiveSmallIntegerField(default=3)
    paid_at = models.DateTimeField(null=True, blank=True)
    past_due_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    payment_reference = models.CharField(max_length=255, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "number"], name="invoice_number_unique"),
            models.UniqueConstraint(
                fields=["environment", "sequence"], name="invoice_sequence_unique"
            ),
            models.UniqueConstraint(
                fields=["environment", "subscription", "period_start"],
                condition=Q(type__in=["regular", "in_advance_initial"]),
                name="invoice_one_per_subscription_period",
            ),
            models.UniqueConstraint(
                fields=["environment", "plan_change"],
                condition=Q(plan_change__isnull=False),
                name="invoice_one_per_plan_change",
            ),
            models.UniqueConstraint(
                fields=["environment", "subscription"],
                condition=Q(reason="cancellation"),
                name="invoice_one_cancellation_credit",
            ),
            models.UniqueConstraint(
                fields=["environment", "subscription", "period_start"],
                condition=Q(reason="late_usage"),
                name="invoice_one_late_usage_per_day",
            ),
            models.CheckConstraint(
                condition=~Q(type="credit") | Q(total_minor__lte=0),
                name="invoice_credit_note_not_positive",
            ),
            models.CheckConstraint(
                condition=Q(period_end__gte=models.F("period_start")),
                name="invoice_period_ordered",
            ),
            models.CheckConstraint(
                condition=~Q(status="paid") | Q(paid_at__isnull=False),
                name="invoice_paid_has_paid_at",
            ),
        ]
        indexes = [
            models.Index(
                fields=["environment", "customer", "created_at", "id"], name="invoice_customer_idx"
            ),
            models.Index(fields=["environment", "created_at", "id"], name="invoice_env_idx"),
            models.Index(fields=["subscription", "period_start"], name="invoice_subscription_idx"),
            # The status job: open invoices by due date.
            models.Index(
                fields=["due_at"],
                condition=Q(status__in=["pending", "due"]),
                name="invoice_open_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


class InvoiceLine(EnvironmentOwned):
    class Kind(models.TextChoices):
        BASE = "base", "Plan base price"
        USAGE = "usage", "Usage"
        OVERAGE = "overage", "Usage beyond the cap"
        CREDITS = "credits", "Credits applied"
        PRORATION = "proration", "Proration of a plan change"
        LATE_USAGE = "late_usage", "Adjustment for late usage"
        CANCELLATION = "cancellation", "Unused part of the period"
        CHARGE = "charge", "One-off charge"

    id = models.BigAutoField(primary_key=True)
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=12, choices=Kind.choices)
    description = models.CharField(max_length=255)
    feature = models.ForeignKey(
        "features.Feature", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    plan = models.ForeignKey(
        "plans.Plan", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # The service period the line charges for.
    service_start = models.DateTimeField()
    service_end = models.DateTimeField()
    quantity = models.DecimalField(
        max_digits=UNITS_DIGITS, decimal_places=UNITS_PLACES, null=True, blank=True
    )
    # The unrounded amount in major units, and the one rounding of it (minor units).
    amount_exact = models.DecimalField(max_digits=EXACT_DIGITS, decimal_places=EXACT_PLACES)
    amount_minor = models.BigIntegerField()
    # Usage billed (usage lines: the period's totals; late-usage lines: the difference).
    units_total = models.DecimalField(
        max_digits=UNITS_DIGITS, decimal_places=UNITS_PLACES, null=True, blank=True
    )
    units_beyond_cap = models.DecimalField(
        max_digits=UNITS_DIGITS, decimal_places=UNITS_PLACES, null=True, blank=True
    )
    # Credit-backed usage: the units a hard-limit pool did not cover (its shortfall), charged
    # in money (null: none, or not credit-backed). Late-usage lines: the difference.
    units_uncovered = models.DecimalField(
        max_digits=UNITS_DIGITS, decimal_places=UNITS_PLACES, null=True, blank=True
    )
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["invoice", "position"], name="invoice_line_position_unique"
            ),
            models.CheckConstraint(
                condition=Q(units_total__isnull=True, units_beyond_cap__isnull=True)
                | Q(units_total__isnull=False, units_beyond_cap__isnull=False),
                name="invoice_line_usage_snapshot_complete",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.description}: {self.amount_minor}"
