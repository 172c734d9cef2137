"""Writes for billing, one module per concern:

* :mod:`.billing_settings`: payment terms, grace period, Stripe mode;
* :mod:`.issuing`: gapless invoice numbers and storing drafted invoices;
* :mod:`.timelines`, :mod:`.usage_book`: what the billing jobs walk and how a period's
  usage is read and priced;
* :mod:`.cycles`: the billing cycle, closing passed periods into invoices;
* :mod:`.late_usage`: usage that arrived after its period's invoice;
* :mod:`.proration`: immediate plan changes of in-advance subscriptions;
* :mod:`.statuses`: pending -> due -> past due, and past-due subscriptions;
* :mod:`.payments`: marking an invoice paid, voiding it;
* :mod:`.mirrored`: invoices Stripe issued (Stripe-driven mode).

Other apps import from this package (``from apps.billing.services import ...``), not
from its modules.
"""

from __future__ import annotations

from .billing_settings import EnvBilling, billing_settings_get, billing_settings_update
from .cycles import CycleResult, billing_close_periods
from .issuing import InvoiceDraft, _allocate_numbers
from .late_usage import LateUsageResult, billing_invoice_late_usage, late_usage_window
from .mirrored import invoice_create_mirrored, invoice_update_mirrored
from .one_off import MAX_CHARGES, Charge, invoice_issue_charges
from .payments import invoice_mark_paid, invoice_void
from .proration import billing_prorate_changes
from .statuses import MIRRORED, StatusResult, billing_update_statuses

__all__ = [
    "MAX_CHARGES",
    "MIRRORED",
    "Charge",
    "CycleResult",
    "EnvBilling",
    "InvoiceDraft",
    "LateUsageResult",
    "StatusResult",
    "_allocate_numbers",
    "billing_close_periods",
    "billing_invoice_late_usage",
    "billing_prorate_changes",
    "billing_settings_get",
    "billing_settings_update",
    "billing_update_statuses",
    "invoice_create_mirrored",
    "invoice_issue_charges",
    "invoice_mark_paid",
    "invoice_update_mirrored",
    "invoice_void",
    "late_usage_window",
]
