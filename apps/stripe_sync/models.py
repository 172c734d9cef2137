"""Stripe, per environment: the connection, the webhook events received, pass-through invoices.

* :class:`StripeConnection`: one per environment. The secret or restricted key is
  stored encrypted (``apps.core.crypto``); only its last 4 characters are ever shown.
  Webhooks arrive at dj-stripe's ``ProcessWebhookView`` (``/stripe/webhook/<uuid>/``)
  through the connection's dj-stripe ``WebhookEndpoint`` (which holds the signing
  secret); the endpoint tells us the environment. The mode lives in
  ``billing.BillingSettings.stripe_mode``.
* :class:`StripeWebhookEvent`: every verified event, once per environment
  (``stripe_event_id`` unique per environment, inserted ``ON CONFLICT DO NOTHING`` in
  the transaction that handles it): a duplicate delivery finds the row and is skipped.
* :class:`StripeInvoiceSync`: pass-through mode, one of our invoices pushed to Stripe.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.core.tenancy import EnvironmentOwned


class StripeConnection(EnvironmentOwned):
    class KeyType(models.TextChoices):
        SECRET = "secret", "Secret key (sk_)"
        RESTRICTED = "restricted", "Restricted key (rk_)"

    class WebhookSource(models.TextChoices):
        # Created through the Stripe API (POST /v1/webhook_endpoints): Stripe gave the secret.
        STRIPE = "stripe", "Endpoint created in Stripe"
        # The Stripe account refused (e.g. a restricted key without webhook rights): we made
        # the secret; the operator enters our URL and this secret in Stripe.
        LOCAL = "local", "Secret generated here; endpoint to be added in Stripe"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key_encrypted = models.TextField()
    # The last 4 characters of the key: the only part of it ever returned.
    key_hint = models.CharField(max_length=4)
    key_type = models.CharField(max_length=10, choices=KeyType.choices)
    livemode = models.BooleanField(default=False)
    # The Stripe account the key belongs to ("acct_..."), when Stripe says.
    account_id = models.CharField(max_length=255, blank=True, default="")
    webhook_endpoint = models.OneToOneField(
        "djstripe.WebhookEndpoint",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="tanso_connection",
    )
    webhook_source = models.CharField(
        max_length=6, choices=WebhookSource.choices, default=WebhookSource.LOCAL
    )
    connected_at = models.DateTimeField(default=timezone.now)
    # For the settings page: the last sync's time, error and counts (e.g. {"invoicesPushed": 3}).
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    sync_counts = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment"], name="stripe_connection_one_per_env")
        ]

    def __str__(self) -> str:
        return f"Stripe …{self.key_hint} for {self.environment_id}"


class StripeWebhookEvent(EnvironmentOwned):
    """A verified Stripe event, recorded once; ``handled`` says a handler took it."""

    id = models.BigAutoField(primary_key=True)
    stripe_event_id = models.CharField(max_length=255)
    type = models.CharField(max_length=255)
    livemode = models.BooleanField(default=False)
    received_at = models.DateTimeField(default=timezone.now)
    # Handlers registered for the type ran (False: an unknown type, recorded and ignored).
    handled = models.BooleanField(default=False)
    payload = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "stripe_event_id"], name="stripe_webhook_event_once"
            )
        ]
        indexes = [
            models.Index(fields=["environment", "received_at"], name="stripe_event_env_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.stripe_event_id} ({self.type})"

    @property
    def data_object(self) -> dict:
        """``payload["data"]["object"]``: the Stripe object the event is about."""
        return (self.payload.get("data") or {}).get("object") or {}


class StripeInvoiceSync(EnvironmentOwned):
    """Pass-through: one of our invoices and the Stripe invoice collecting it."""

    class State(models.TextChoices):
        PENDING = "pending", "To push"
        PUSHED = "pushed", "Finalized in Stripe (open for payment)"
        PAID = "paid", "Paid in Stripe"
        FAILED = "failed", "Push failed (will retry)"
        SKIPPED = "skipped", "Not pushed (paid or void here first)"

    invoice = models.OneToOneField(
        "billing.Invoice", on_delete=models.CASCADE, primary_key=True, related_name="stripe_sync"
    )
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    stripe_invoice_id = models.CharField(max_length=255, blank=True, default="")
    stripe_status = models.CharField(max_length=32, blank=True, default="")
    hosted_invoice_url = models.URLField(max_length=2048, blank=True, default="")
    push_attempts = models.PositiveIntegerField(default=0)
    pushed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    # Stripe's payment failures (invoice.payment_failed): our invoice stays due / past due.
    payment_failures = models.PositiveIntegerField(default=0)
    last_payment_error = models.TextField(blank=True, default="")
    last_payment_failed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "stripe_invoice_id"],
                condition=~Q(stripe_invoice_id=""),
                name="stripe_invoice_sync_stripe_id_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.invoice_id} -> {self.stripe_invoice_id or '(not pushed)'}"
