from __future__ import annotations

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "apps.billing"
    label = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        # Invoice revenue enters the ledger's recognised revenue as invoices are issued
        # or voided (apps/billing/recognition.py, docs/revenue.md).
        from . import recognition, signals

        signals.invoices_issued.connect(
            recognition.on_invoices_issued, dispatch_uid="billing.recognition.issued"
        )
        signals.invoice_settled.connect(
            recognition.on_invoice_settled, dispatch_uid="billing.recognition.settled"
        )
