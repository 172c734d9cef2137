"""Error codes of the billing app (rendered through ``apps.core.errors``)."""

from __future__ import annotations

INVOICE_VOID = "invoice_void"
INVOICE_PAID = "invoice_paid"
INVOICE_NOT_PAYABLE = "invoice_not_payable"
STRIPE_DRIVEN = "stripe_driven"
SUBSCRIPTION_ENDED = "subscription_ended"
