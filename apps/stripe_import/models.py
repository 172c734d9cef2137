"""Read-only import of a Stripe account (``import`` mode, Observe): what Stripe holds,
recorded here so imported subscriptions count as revenue in the margin views.

* :class:`ImportJob`: one run of the import (a Celery task), with its progress.
  At most one job per environment is pending or running (a partial unique index).
* Mapping rows, one per Stripe object and environment (``stripe_id`` unique per
  environment, written ``INSERT ... ON CONFLICT DO UPDATE``): a second run updates
  them, it never adds a second row.

  Their common shape (id, ``stripe_id``, metadata, times) is :class:`ImportedObject`.

  * :class:`ImportedCustomer` -> our :class:`~apps.customers.models.Customer`
    (matched, or created with source ``stripe``);
  * :class:`ImportedProduct`, :class:`ImportedPrice` (prices and legacy plans);
  * :class:`ImportedSubscription`: its status and dates, its items as imported and the
    recurring amount they add up to per billing interval (exact, major units of its
    currency), and the span in which it earns revenue (``revenue_from`` /
    ``revenue_until``), which is all the margin views read.

Nothing here is ever written to Stripe.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.core.tenancy import EnvironmentOwned

# Amounts are exact: a unit_amount_decimal has up to 12 decimals, times a quantity.
AMOUNT_DIGITS = 40
AMOUNT_PLACES = 12


class ImportJob(EnvironmentOwned):
    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a worker"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    ACTIVE = (Status.PENDING, Status.RUNNING)

    class Phase(models.TextChoices):
        QUEUED = "queued", "Queued"
        CUSTOMERS = "customers", "Customers"
        PRODUCTS = "products", "Products"
        PRICES = "prices", "Prices and plans"
        SUBSCRIPTIONS = "subscriptions", "Subscriptions"
        DONE = "done", "Done"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.PENDING)
    phase = models.CharField(max_length=13, choices=Phase.choices, default=Phase.QUEUED)
    # Objects read from Stripe so far (Stripe gives no count up front), of which recorded
    # (processed) and refused (failed: each with a line in ``errors``).
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    # Per object kind: {"customers": {"read", "created", "matched", "failed"}, ...}.
    counts = models.JSONField(default=dict, blank=True)
    # [{"object", "id", "message"}], the first MAX_ERRORS.
    errors = models.JSONField(default=list, blank=True)
    # Why a failed job stopped (a key Stripe refused, Stripe unreachable after retries).
    error = models.TextField(blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    requested_by = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Moves with every page: a running job that stops moving is stale (its worker died).
    updated_at = models.DateTimeField(default=timezone.now)

    MAX_ERRORS = 50

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment"],
                condition=Q(status__in=["pending", "running"]),
                name="stripe_import_one_active_job",
            ),
            models.CheckConstraint(
                condition=Q(total__gte=models.F("processed") + models.F("failed")),
                name="stripe_import_progress_within_total",
            ),
        ]
        indexes = [
            models.Index(fields=["environment", "-created_at"], name="stripe_import_job_env_idx")
        ]

    def __str__(self) -> str:
        return f"Stripe import {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


class ImportedObject(EnvironmentOwned):
    """One Stripe object of the environment as imported: its id, once per environment
    (each subclass names its ``(environment, stripe_id)`` unique constraint with
    :func:`stripe_id_once`: the upserts' conflict target), and when it was first and last
    written."""

    id = models.BigAutoField(primary_key=True)
    stripe_id = models.CharField(max_length=255)
    metadata = models.JSONField(default=dict, blank=True)  # the Stripe object's
    imported_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.stripe_id


def stripe_id_once(name: str) -> models.UniqueConstraint:
    """The unique ``(environment, stripe_id)`` of an :class:`ImportedObject` subclass."""
    return models.UniqueConstraint(fields=["environment", "stripe_id"], name=name)


class ImportedCustomer(ImportedObject):
    class Match(models.TextChoices):
        STRIPE_ID = "stripe_customer_id", "Our customer's Stripe customer id"
        METADATA = "metadata", "Our customer's metadata.stripe_customer_id"
        REFERENCE = "reference", "Stripe metadata customerReferenceId, or the cus_ id as reference"
        EVENTS = "events", "Events' meta.stripe_customer_id"
        CREATED = "created", "Created from Stripe (source stripe)"

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="+")
    matched_by = models.CharField(max_length=18, choices=Match.choices)
    email = models.CharField(max_length=255, blank=True, default="")
    name = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        constraints = [stripe_id_once("stripe_import_customer_once")]


class ImportedProduct(ImportedObject):
    name = models.CharField(max_length=255, blank=True, default="")
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [stripe_id_once("stripe_import_product_once")]

    def __str__(self) -> str:
        return self.name or self.stripe_id


class ImportedPrice(ImportedObject):
    """A Stripe price, or a legacy plan (``/v1/plans``: the same thing in Stripe)."""

    class Kind(models.TextChoices):
        PRICE = "price", "Price"
        PLAN = "plan", "Plan"

    kind = models.CharField(max_length=5, choices=Kind.choices)
    product_stripe_id = models.CharField(max_length=255, blank=True, default="")
    nickname = models.CharField(max_length=255, blank=True, default="")
    active = models.BooleanField(default=True)
    currency = models.CharField(max_length=3)  # upper case, ISO 4217
    # Minor units of ``currency`` per unit (Stripe's unit_amount_decimal); null for tiers.
    unit_amount = models.DecimalField(
        max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES, null=True, blank=True
    )
    billing_scheme = models.CharField(max_length=8, default="per_unit")
    tiers_mode = models.CharField(max_length=9, blank=True, default="")
    tiers = models.JSONField(default=list, blank=True)
    transform_quantity = models.JSONField(null=True, blank=True)
    # Empty for a one-time price.
    interval = models.CharField(max_length=5, blank=True, default="")
    interval_count = models.PositiveIntegerField(default=1)
    usage_type = models.CharField(max_length=8, blank=True, default="licensed")

    class Meta:
        constraints = [stripe_id_once("stripe_import_price_once")]

    def __str__(self) -> str:
        return self.nickname or self.stripe_id


class ImportedSubscription(ImportedObject):
    stripe_customer_id = models.CharField(max_length=255)
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=20)  # Stripe's: active, past_due, canceled, ...
    currency = models.CharField(max_length=3)  # upper case
    # The billing interval of its licensed items (Stripe requires one per subscription).
    interval = models.CharField(max_length=5, blank=True, default="")
    interval_count = models.PositiveIntegerField(default=1)
    # Sum of price x quantity of the licensed recurring items, per interval, in major
    # units of ``currency``, exact (metered items are billed on usage: not counted).
    amount = models.DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES)
    # [{"id", "price", "quantity", "usageType", "amount"}] as imported (amounts as strings).
    items = models.JSONField(default=list, blank=True)
    started_at = models.DateTimeField()
    trial_end = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    cancel_at = models.DateTimeField(null=True, blank=True)
    # The period Stripe reported; its start anchors every period before and after it.
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    # The span that earns revenue: from the start (or the trial's end) to the end (or the
    # scheduled cancellation); null until = open. Null from: it earns nothing (incomplete,
    # unpaid, paused, or no recurring amount).
    revenue_from = models.DateTimeField(null=True, blank=True)
    revenue_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            stripe_id_once("stripe_import_subscription_once"),
            models.CheckConstraint(
                condition=Q(revenue_until__isnull=True)
                | Q(revenue_from__isnull=True)
                | Q(revenue_until__gt=models.F("revenue_from")),
                name="stripe_import_revenue_span_ordered",
            ),
            models.CheckConstraint(
                condition=Q(current_period_end__gt=models.F("current_period_start")),
                name="stripe_import_period_ordered",
            ),
        ]
        indexes = [
            # The margin views: the environment's subscriptions earning in a window.
            models.Index(
                fields=["environment", "revenue_from"],
                condition=Q(revenue_from__isnull=False),
                name="stripe_import_sub_revenue_idx",
            ),
            models.Index(fields=["environment", "customer"], name="stripe_import_sub_cust_idx"),
        ]
