"""Hooks for apps above billing (Stripe): billing sends, it never imports them.

Receivers run inside the sending transaction; they should only enqueue work with
``transaction.on_commit`` (never call out to the network here).
"""

from __future__ import annotations

from django.dispatch import Signal

# Invoices were issued (inserted). kwargs: ``invoice_ids`` (list of UUIDs).
invoices_issued = Signal()

# An invoice was settled here: marked paid (``invoice_mark_paid``) or voided
# (``invoice_void``). kwargs: ``invoice`` (the updated Invoice).
invoice_settled = Signal()
