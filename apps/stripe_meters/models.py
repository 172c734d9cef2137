"""Stripe-driven billing (``BillingSettings.stripe_mode == "stripe_driven"``): what we made in
Stripe, the usage we send it, and the invoices it sends back.

Mapping rows (our id <-> Stripe id), one per object, unique on both sides, so a
provisioning run repeated (or run twice at once) never makes a second Stripe object:

* :class:`StripeCustomer`: our customer and its Stripe customer;
* :class:`StripeMeter`: one Stripe Billing Meter per feature (event name
  ``tanso_<featureKey>``, SUM, customer mapped by the payload key ``stripe_customer_id``);
* :class:`StripePlan`: a plan's Stripe product and its licensed base price;
* :class:`StripeRulePrice`: the metered price of one usage rule of a plan (or why the
  rule cannot be priced in Stripe);
* :class:`StripeSubscription`: a subscription and its Stripe subscription.

Usage: :class:`MeterEvent` is the outbox. Ingestion writes one row per event (in
the event's own transaction, ``ON CONFLICT DO NOTHING`` on ``(environment,
event_id)``); the sender task claims pending rows with ``SELECT ... FOR UPDATE SKIP
LOCKED`` and sends each with the identifier :attr:`MeterEvent.identifier`, derived
from our event, on which Stripe dedupes. So each event reaches Stripe once, however
often or concurrently the task runs.

Invoices: :class:`StripeInvoice` ties a Stripe invoice to the ``billing.Invoice``
that mirrors it (shown by our invoices API).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.core.tenancy import EnvironmentOwned

UNITS_DIGITS = 38
UNITS_PLACES = 12


class StripeCustomer(EnvironmentOwned):
    customer = models.OneToOneField(
        "customers.Customer", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    stripe_customer_id = models.CharField(max_length=255)
    # True when we created it in Stripe; False when the customer already named one.
    created_in_stripe = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "stripe_customer_id"], name="stripe_customer_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} -> {self.stripe_customer_id}"


class StripeMeter(EnvironmentOwned):
    feature = models.OneToOneField(
        "features.Feature", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    stripe_meter_id = models.CharField(max_length=255)
    event_name = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "stripe_meter_id"], name="stripe_meter_once"
            ),
            models.UniqueConstraint(
                fields=["environment", "event_name"], name="stripe_meter_event_name_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_name} -> {self.stripe_meter_id}"


class StripePlan(EnvironmentOwned):
    plan = models.OneToOneField(
        "plans.Plan", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    stripe_product_id = models.CharField(max_length=255)
    stripe_base_price_id = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "stripe_product_id"], name="stripe_plan_product_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.plan_id} -> {self.stripe_product_id}"


class StripeRulePrice(EnvironmentOwned):
    """The metered price of a usage rule; ``stripe_price_id`` is empty when the rule has no
    Stripe equivalent, and ``problem`` says why (its usage is then not billed by Stripe)."""

    rule = models.OneToOneField(
        "plans.PlanFeatureRule", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    plan = models.ForeignKey("plans.Plan", on_delete=models.CASCADE, related_name="+")
    feature = models.ForeignKey("features.Feature", on_delete=models.CASCADE, related_name="+")
    stripe_price_id = models.CharField(max_length=255, blank=True, default="")
    problem = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "stripe_price_id"],
                condition=~Q(stripe_price_id=""),
                name="stripe_rule_price_once",
            ),
            models.CheckConstraint(
                condition=~Q(stripe_price_id="") | ~Q(problem=""),
                name="stripe_rule_price_or_problem",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rule_id} -> {self.stripe_price_id or self.problem}"


class StripeSubscription(EnvironmentOwned):
    subscription = models.OneToOneField(
        "subscriptions.Subscription", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    stripe_subscription_id = models.CharField(max_length=255)
    stripe_status = models.CharField(max_length=32, blank=True, default="")
    # Set when the Stripe subscription was cancelled because ours was.
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "stripe_subscription_id"],
                name="stripe_subscription_once",
            )
        ]

    def __str__(self) -> str:
        return f"{self.subscription_id} -> {self.stripe_subscription_id}"


class MeterEvent(EnvironmentOwned):
    """One event's usage for Stripe: the units its credits did not cover."""

    class Status(models.TextChoices):
        PENDING = "pending", "To send"
        # No Stripe customer or meter for it yet: sent once provisioning makes them.
        BLOCKED = "blocked", "Waiting for its Stripe customer or meter"
        SENT = "sent", "Received by Stripe"
        FAILED = "failed", "Refused by Stripe, or out of retries (flagged, not fatal)"

    id = models.BigAutoField(primary_key=True)
    # The event (events_event is partitioned by occurred_at: no foreign key); plain ids for
    # the customer and feature too, so the ingest insert checks no foreign keys.
    event_id = models.BigIntegerField()
    occurred_at = models.DateTimeField()
    customer_id = models.UUIDField()
    feature_id = models.UUIDField()
    # Units to bill in Stripe (the event's units less those its credits covered), > 0.
    value = models.DecimalField(max_digits=UNITS_DIGITS, decimal_places=UNITS_PLACES)
    status = models.CharField(max_length=7, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "event_id"], name="meter_event_once"),
            models.CheckConstraint(condition=Q(value__gt=0), name="meter_event_value_positive"),
            models.CheckConstraint(
                condition=~Q(status="sent") | Q(sent_at__isnull=False),
                name="meter_event_sent_has_sent_at",
            ),
        ]
        indexes = [
            # The sender's scan: due rows of an environment, oldest first.
            models.Index(
                fields=["environment", "next_attempt_at", "id"],
                condition=Q(status="pending"),
                name="meter_event_pending_idx",
            ),
            # Unblocking when a customer or a meter gets its Stripe id.
            models.Index(
                fields=["environment", "customer_id"],
                condition=Q(status="blocked"),
                name="meter_event_blocked_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.identifier}: {self.value} ({self.status})"

    @property
    def identifier(self) -> str:
        return meter_event_identifier(self.environment_id, self.event_id)


def meter_event_identifier(environment_id: object, event_id: int) -> str:
    """The meter event's identifier in Stripe: stable per event (Stripe dedupes on it)."""
    return f"tanso-{environment_id}-{event_id}"


class StripeInvoice(EnvironmentOwned):
    """A Stripe invoice of a Stripe-driven subscription and the invoice mirroring it here."""

    invoice = models.OneToOneField(
        "billing.Invoice", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    stripe_invoice_id = models.CharField(max_length=255)
    stripe_status = models.CharField(max_length=32)
    stripe_number = models.CharField(max_length=255, blank=True, default="")
    hosted_invoice_url = models.URLField(max_length=2048, blank=True, default="")
    # The ``created`` time of the last Stripe event applied (older deliveries change nothing).
    last_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "stripe_invoice_id"], name="stripe_invoice_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.stripe_invoice_id} -> {self.invoice_id}"
