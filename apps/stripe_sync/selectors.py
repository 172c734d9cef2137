"""Reads of the Stripe app: environment first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apps.core.tenancy import scoped

from .models import StripeConnection, StripeInvoiceSync

if TYPE_CHECKING:
    from apps.accounts.models import Environment


def stripe_connection_get(environment: Environment) -> StripeConnection | None:
    """The environment's connection (with its webhook endpoint), or None."""
    return scoped(StripeConnection, environment).select_related("webhook_endpoint").first()


def stripe_invoice_sync_get(environment: Environment, invoice_id: Any) -> StripeInvoiceSync | None:
    return scoped(StripeInvoiceSync, environment).filter(invoice_id=invoice_id).first()
