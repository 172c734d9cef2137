"""Invoices: the list, one invoice, and marking it paid (asks first: a paid invoice stays
paid)."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.accounts.audit import Actor
from apps.accounts.models import Role
from apps.billing import selectors as billing
from apps.billing.models import Invoice
from apps.billing.services import invoice_mark_paid
from apps.core.errors import TansoError
from apps.core.money import from_minor_units
from apps.core.money_format import format_money
from apps.dashboard.confirm import Confirmation, needs_confirmation
from apps.dashboard.decorators import tenant_view

from .common import can_manage, error_text, get_or_404, page_of, render_page

CUSTOMER_INVOICES = 10


# --- Invoices --------------------------------------------------------------------------------

INVOICE_STATUSES = (("", "All"), *Invoice.Status.choices)


def invoice_amount(invoice: Invoice) -> Decimal:
    return from_minor_units(invoice.total_minor, invoice.currency)


@tenant_view()
def invoice_list(request: HttpRequest) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    status = request.GET.get("status", "")
    if status not in dict(INVOICE_STATUSES):
        status = ""
    rows = billing.invoices_search(environment, status=status or None).order_by(
        "-issued_at", "-sequence"
    )
    page = page_of(request, rows)
    context = {
        "page": page,
        "invoices": [(inv, invoice_amount(inv)) for inv in page],
        "status": status,
        "statuses": INVOICE_STATUSES,
    }
    return render_page(request, "dashboard/platform/invoices.html", "table", context)


@tenant_view()
def invoice_detail(request: HttpRequest, invoice_id: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    invoice = get_or_404(billing.invoice_get, environment, invoice_id)
    context = {
        "invoice": invoice,
        "amount": invoice_amount(invoice),
        "lines": [
            (line, from_minor_units(line.amount_minor, invoice.currency))
            for line in invoice.lines.all()
        ],
        "can_manage": can_manage(request),
    }
    return render(request, "dashboard/platform/invoice.html", context)


@require_POST
@tenant_view(Role.MEMBER)
def invoice_pay(request: HttpRequest, invoice_id: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    invoice = get_or_404(billing.invoice_get, environment, invoice_id)
    if invoice.status in (Invoice.Status.PENDING, Invoice.Status.DUE, Invoice.Status.PAST_DUE):
        reference = request.POST.get("reference", "").strip()[:255]
        asked = needs_confirmation(
            request,
            Confirmation(
                title=f"Mark invoice {invoice.number} paid?",
                consequence=(
                    f"The invoice of {format_money(invoice_amount(invoice), invoice.currency)} is "
                    f"recorded as paid{f' (reference: {reference})' if reference else ''} "
                    "and its customer is no longer asked for it; if the subscription was past "
                    "due for it, it becomes active again. A paid invoice cannot be reopened."
                ),
                label="Mark paid",
                back_url=reverse("dashboard:invoice", args=[invoice.pk]),
            ),
        )
        if asked is not None:
            return asked
    try:
        invoice = invoice_mark_paid(
            invoice=invoice,
            reference=request.POST.get("reference", "")[:255],
            actor=Actor.from_request(request),
        )
        messages.success(request, f"Invoice {invoice.number} marked paid.")
    except TansoError as exc:
        messages.error(request, error_text(exc))
    return redirect("dashboard:invoice", invoice_id=invoice.pk)
