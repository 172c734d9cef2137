"""Error codes of the Stripe app (rendered through ``apps.core.errors``)."""

from __future__ import annotations

STRIPE_KEY_INVALID = "stripe_key_invalid"
STRIPE_UNREACHABLE = "stripe_unreachable"
STRIPE_NOT_CONNECTED = "stripe_not_connected"
NOT_PASS_THROUGH = "not_pass_through"
INVOICE_NOT_PAYABLE = "invoice_not_payable"
