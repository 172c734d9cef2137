"""The event ledger: one row per AI request, its key, hourly rollups and re-costing audits.

Storage layout (PostgreSQL only; see migrations/0001 for the DDL):

* ``events_event`` is range-partitioned by month on ``occurred_at``. The
  database primary key is ``(id, occurred_at)`` (a partitioned table's unique
  keys must contain the partition column); ``id`` comes from one sequence so it
  is unique on its own, which is what the Django model declares.
* ``events_eventkey`` holds ``(environment_id, idempotency_key)`` as its primary
  key: the duplicate check stays exact across partitions.
* ``events_hourlyrollup`` (hour x customer x feature x model x API key) and the daily
  ``events_dailycustomerrollup`` (day x customer) and
  ``events_dailyfeaturemodelrollup`` (day x feature x model) are kept in step
  with the events in the same statement, so analytics never scan raw events
  and long windows read the small daily tables.

The hot tables carry no database foreign keys (``db_constraint=False``): a
per-row RI check costs a lookup and a row lock at 15k rows/s, and events are
facts that must never disappear by a cascading delete. Ingestion only writes
ids it has just resolved in the same transaction.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.core.money import EVENT_DECIMAL_PLACES, EVENT_MAX_DIGITS
from apps.core.tenancy import EnvironmentQuerySet, unconstrained_environment

# Sums in rollups and audits can outgrow one event's 24 digits.
SUM_MAX_DIGITS = 38

# The hourly rollup's ``api_key_id`` for events no API key wrote (``events_event.api_key_id``
# NULL: rows stored before the column existed, events written by the product itself). A
# primary-key column cannot be NULL, so the rollup names them with the nil UUID, which no
# key has (keys get random v4 ids).
NO_API_KEY = uuid.UUID(int=0)


class CostSource(models.TextChoices):
    EXPLICIT = "explicit", "costAmount sent by the caller"
    OVERRIDE_RATE = "override_rate", "Environment's negotiated rate"
    OVERRIDE_DISCOUNT = "override_discount", "Catalog price with the environment's discount"
    CATALOG = "catalog", "Model price catalog"
    # A model and usageUnits but no token counts: usageUnits priced as input tokens (the
    # catalog's price, or the environment's override), an estimate; token counts make it
    # exact.
    ESTIMATED = "estimated", "Estimate: usageUnits priced as input tokens"
    UNPRICED = "unpriced", "Cost unknown"


class UnpricedReason(models.TextChoices):
    NONE = "", "Priced"
    UNKNOWN_MODEL = "unknown_model", "No price for this model"
    NO_MODEL = "no_model", "Neither model nor costAmount given"
    NO_TOKENS = "no_token_counts", "Model given without token counts"


class RevenueSource(models.TextChoices):
    NONE = "", "No revenue"
    EXPLICIT = "explicit", "revenueAmount sent by the caller"
    PLAN_RULE = "plan_rule", "Priced by the customer's plan rule at ingestion"


def _env_fk() -> models.ForeignKey:
    return unconstrained_environment(models.DO_NOTHING)


class Event(models.Model):
    """One AI request: usage, cost (USD, 12 dp), revenue (USD, 12 dp), attribution."""

    # Unique on its own (one sequence); the database key is (id, occurred_at).
    id = models.BigIntegerField(primary_key=True)
    environment = _env_fk()
    idempotency_key = models.CharField(max_length=255)
    event_name = models.CharField(max_length=255)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    customer = models.ForeignKey(
        "customers.Customer",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    feature = models.ForeignKey(
        "features.Feature",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    # "" when the caller named no model / provider (keeps rollup keys NOT NULL).
    model = models.CharField(max_length=255, blank=True, default="")
    provider = models.CharField(max_length=64, blank=True, default="")
    usage_units = models.DecimalField(max_digits=EVENT_MAX_DIGITS, decimal_places=12, default=1)
    # Token counts as the provider reports them; input_tokens includes cached tokens.
    input_tokens = models.BigIntegerField(null=True, blank=True)
    output_tokens = models.BigIntegerField(null=True, blank=True)
    cache_read_tokens = models.BigIntegerField(null=True, blank=True)
    cache_write_tokens = models.BigIntegerField(null=True, blank=True)
    reasoning_tokens = models.BigIntegerField(null=True, blank=True)
    # USD; NULL means unknown (cost_source "unpriced"), never a silent zero.
    cost_usd = models.DecimalField(
        max_digits=EVENT_MAX_DIGITS, decimal_places=EVENT_DECIMAL_PLACES, null=True, blank=True
    )
    cost_source = models.CharField(max_length=20, choices=CostSource.choices)
    unpriced_reason = models.CharField(
        max_length=20, choices=UnpricedReason.choices, blank=True, default=""
    )
    price_version_id = models.BigIntegerField(null=True, blank=True)
    # USD; NULL when the caller sent no revenueAmount.
    revenue_usd = models.DecimalField(
        max_digits=EVENT_MAX_DIGITS, decimal_places=EVENT_DECIMAL_PLACES, null=True, blank=True
    )
    revenue_source = models.CharField(
        max_length=20, choices=RevenueSource.choices, blank=True, default=""
    )
    duration_ms = models.IntegerField(null=True, blank=True)
    # traceId (Observe) and flowId (Platform) are one concept: a multi-step flow.
    trace_id = models.CharField(max_length=255, blank=True, default="")
    meta = models.JSONField(default=dict, blank=True)
    reservation_id = models.UUIDField(null=True, blank=True)
    # The key that wrote the event (per-key budgets, alerts, the gateway). NULL when no key
    # did: events stored before the column existed, or written by the product itself. No
    # database foreign key, as for customer and feature: the check would cost a lookup and
    # a row lock on the key per event on the hot path, and a key's deletion must never
    # touch the facts it wrote. No index either: per-key reads use the hourly rollup.
    api_key = models.ForeignKey(
        "apikeys.ApiKey",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
    )
    # System stamps, e.g. {"usage_limit_exceeded": true, "recostRunId": 3}: their keys and
    # types, readers and writers are in flags.py.
    flags = models.JSONField(default=dict, blank=True)

    objects = EnvironmentQuerySet.as_manager()

    class Meta:
        # The table is created by RunSQL (partitioned); these mirror that DDL.
        constraints = [
            models.CheckConstraint(
                condition=(Q(cost_source="unpriced") & Q(cost_usd__isnull=True))
                | (~Q(cost_source="unpriced") & Q(cost_usd__isnull=False) & Q(cost_usd__gte=0)),
                name="event_cost_known_unless_unpriced",
            ),
        ]
        indexes = [
            models.Index(fields=["environment", "-occurred_at", "-id"], name="event_env_time_idx"),
            models.Index(
                fields=["environment", "customer", "-occurred_at"], name="event_env_cust_time_idx"
            ),
            models.Index(
                fields=["environment", "feature", "-occurred_at"], name="event_env_feat_time_idx"
            ),
            models.Index(
                fields=["environment", "model", "-occurred_at"], name="event_env_model_time_idx"
            ),
            models.Index(
                fields=["environment", "trace_id", "occurred_at"],
                condition=~Q(trace_id=""),
                name="event_env_trace_idx",
            ),
            models.Index(
                fields=["environment", "occurred_at"],
                condition=Q(cost_usd__isnull=True),
                name="event_env_unpriced_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_name} {self.idempotency_key}"

    @property
    def margin_usd(self):
        if self.revenue_usd is None or self.cost_usd is None:
            return None
        return self.revenue_usd - self.cost_usd


class EventKey(models.Model):
    """The exact duplicate check: one row per (environment, idempotency key), ever."""

    pk = models.CompositePrimaryKey("environment_id", "idempotency_key")
    environment = _env_fk()
    idempotency_key = models.CharField(max_length=255)
    event_id = models.BigIntegerField()
    # Lets a lookup by key go straight to the event's partition.
    occurred_at = models.DateTimeField()

    objects = EnvironmentQuerySet.as_manager()

    def __str__(self) -> str:
        return self.idempotency_key


def _customer_fk() -> models.ForeignKey:
    return models.ForeignKey(
        "customers.Customer",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )


def _feature_fk() -> models.ForeignKey:
    return models.ForeignKey(
        "features.Feature",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )


class RollupMeasures(models.Model):
    """The sums every rollup carries (USD amounts; ``cost_usd`` over priced events only)."""

    event_count = models.BigIntegerField(default=0)
    usage_units = models.DecimalField(max_digits=SUM_MAX_DIGITS, decimal_places=12, default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(
        max_digits=SUM_MAX_DIGITS, decimal_places=EVENT_DECIMAL_PLACES, default=0
    )
    revenue_usd = models.DecimalField(
        max_digits=SUM_MAX_DIGITS, decimal_places=EVENT_DECIMAL_PLACES, default=0
    )
    unpriced_count = models.BigIntegerField(default=0)
    # The part of cost_usd that is estimated (cost source "estimated").
    estimated_cost_usd = models.DecimalField(
        max_digits=SUM_MAX_DIGITS, decimal_places=EVENT_DECIMAL_PLACES, default=0, db_default=0
    )
    revenue_count = models.BigIntegerField(default=0)
    # Sum and count of durationMs over events that carried one (for averages).
    duration_ms_sum = models.BigIntegerField(default=0)
    duration_count = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class HourlyRollup(RollupMeasures):
    """Sums of the events of one hour per (customer, feature, model, provider, API key).

    Updated in the transaction that stores the events (and by re-costing, by the
    delta), so it always equals a fresh GROUP BY over ``events_event``.
    Amounts in USD; ``cost_usd`` sums priced events only (``unpriced_count`` says
    how many are missing from it).
    """

    # The key id comes last: every read by the leading columns keeps its index range, and
    # a grain of one key more multiplies the rows only by the keys in use in that hour.
    pk = models.CompositePrimaryKey(
        "environment_id",
        "bucket_start",
        "customer_id",
        "feature_id",
        "model",
        "provider",
        "api_key_id",
    )
    environment = _env_fk()
    bucket_start = models.DateTimeField()  # UTC, on the hour
    customer = _customer_fk()
    feature = _feature_fk()
    model = models.CharField(max_length=255, blank=True, default="")
    provider = models.CharField(max_length=64, blank=True, default="")
    # The writing key's id; NO_API_KEY for events no key wrote (not a relation: the
    # sentinel names no key).
    api_key_id = models.UUIDField(default=NO_API_KEY, db_default=NO_API_KEY)

    objects = EnvironmentQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(
                fields=["environment", "customer", "bucket_start"], name="rollup_env_cust_idx"
            ),
            models.Index(
                fields=["environment", "feature", "bucket_start"], name="rollup_env_feat_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.bucket_start:%Y-%m-%d %H}h {self.model or '-'}"


class DailyCustomerRollup(RollupMeasures):
    """Sums of one UTC day per customer: overview totals, daily series, customer tables.

    The hourly grain (hour x customer x feature x model) barely compresses at
    volume; a day per customer is ~24 x (features x models) times fewer rows.
    Kept in step exactly like ``HourlyRollup`` (same statement, same deltas).
    """

    pk = models.CompositePrimaryKey("environment_id", "bucket_start", "customer_id")
    environment = _env_fk()
    bucket_start = models.DateTimeField()  # UTC midnight
    customer = _customer_fk()
    # The latest hour bucket of the day that has events (the tables' "last active hour").
    last_bucket_start = models.DateTimeField()

    objects = EnvironmentQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.bucket_start:%Y-%m-%d} {self.customer_id}"


class DailyFeatureModelRollup(RollupMeasures):
    """Sums of one UTC day per (feature, model, provider): feature and model tables."""

    pk = models.CompositePrimaryKey(
        "environment_id", "bucket_start", "feature_id", "model", "provider"
    )
    environment = _env_fk()
    bucket_start = models.DateTimeField()  # UTC midnight
    feature = _feature_fk()
    model = models.CharField(max_length=255, blank=True, default="")
    provider = models.CharField(max_length=64, blank=True, default="")
    last_bucket_start = models.DateTimeField()

    objects = EnvironmentQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.bucket_start:%Y-%m-%d} {self.model or '-'}"


class RecostRun(models.Model):
    """Audit of one re-costing pass: who, what filter, what changed (USD)."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.BigAutoField(primary_key=True)
    # NULL: a run across every environment (the scheduled task or `recost --all-envs`).
    environment = models.ForeignKey(
        "accounts.Environment",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
    )
    actor = models.CharField(max_length=255)
    filters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    events_examined = models.BigIntegerField(default=0)
    events_changed = models.BigIntegerField(default=0)
    events_newly_priced = models.BigIntegerField(default=0)
    cost_change_usd = models.DecimalField(
        max_digits=SUM_MAX_DIGITS, decimal_places=EVENT_DECIMAL_PLACES, default=0
    )
    error = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["environment", "-started_at"], name="recost_env_time_idx")]

    def __str__(self) -> str:
        return f"recost #{self.pk} ({self.status})"


class RecognisedRevenue(models.Model):
    """Revenue the events do not carry, recognised day by day (docs/revenue.md).

    One row per environment x UTC day x customer x feature (or none) x source x origin:
    ``amount`` USD at 12 places, the part of ``origin`` (for invoices, the invoice's id)
    that falls on ``day``. Written by the apps that own the origin (billing, when an
    invoice is issued or voided: :mod:`apps.billing.recognition`), rebuildable from
    them; read by the ledger's read API beside the rollups (:mod:`apps.events.usage.revenue`).
    ``feature`` NULL: revenue of no feature (a base fee), attributed to features at
    read time by their share of the customer's cost in the window read.
    """

    class Source(models.TextChoices):
        INVOICE = "invoice", "Invoice lines beyond the events' own revenue"

    id = models.BigAutoField(primary_key=True)
    environment = _env_fk()
    day = models.DateField()
    customer = _customer_fk()
    feature = models.ForeignKey(
        "features.Feature",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
        null=True,
        blank=True,
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    origin = models.CharField(max_length=64)
    amount = models.DecimalField(max_digits=SUM_MAX_DIGITS, decimal_places=EVENT_DECIMAL_PLACES)

    objects = EnvironmentQuerySet.as_manager()

    class Meta:
        indexes = [
            # Reads: one environment's days (a window), then by customer.
            models.Index(fields=["environment", "day", "customer"], name="recognised_env_day_idx"),
            # Writes: replace one origin's rows.
            models.Index(
                fields=["environment", "customer", "source", "origin"],
                name="recognised_origin_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.customer_id} {self.amount}"
