"""The printable invoice page: a plain Django view for signed-in members of the tenant.

The invoice is looked up in the session's environment (the tenancy choke-point),
so another organization's invoice, or one of the other environment, is a 404.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.safestring import SafeString

from apps.accounts.models import Role
from apps.core.money import from_minor_units
from apps.core.money_format import money_html
from apps.dashboard.decorators import tenant_view

from .selectors import invoice_get


def _amount(minor: int, currency: str) -> SafeString:
    return money_html(from_minor_units(minor, currency), currency)


@tenant_view(Role.VIEWER)
def invoice_page(request: HttpRequest, invoice_id: str) -> HttpResponse:
    invoice = invoice_get(request.environment, invoice_id)  # type: ignore[attr-defined]
    currency = invoice.currency
    lines: list[dict[str, Any]] = [
        {"line": line, "amount": _amount(line.amount_minor, currency)}
        for line in invoice.lines.all()
    ]
    customer = invoice.customer
    name = " ".join(part for part in (customer.first_name, customer.last_name) if part)
    context = {
        "invoice": invoice,
        "organization": request.environment.organization,  # type: ignore[attr-defined]
        "environment": request.environment,  # type: ignore[attr-defined]
        "customer": customer,
        "customer_name": name,
        "lines": lines,
        "total": _amount(invoice.total_minor, currency),
        "is_credit_note": invoice.type == invoice.Type.CREDIT,
    }
    return render(request, "billing/invoice.html", context)
