"""Reads of invoices: environment first; another tenant's invoice is a 404."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Prefetch, QuerySet

from apps.core.tenancy import get_scoped_or_404, scoped

from .models import Invoice, InvoiceLine

if TYPE_CHECKING:
    from apps.accounts.models import Environment
    from apps.customers.models import Customer


def _with_lines(invoices: QuerySet[Invoice]) -> QuerySet[Invoice]:
    return invoices.select_related("customer", "subscription").prefetch_related(
        Prefetch(
            "lines",
            queryset=InvoiceLine.objects.select_related("feature").order_by("position"),
        )
    )


def invoices_for(environment: Environment) -> QuerySet[Invoice]:
    return scoped(Invoice, environment)


def invoices_search(
    environment: Environment,
    *,
    customer: Customer | None = None,
    status: str | None = None,
    subscription_id: str | None = None,
) -> QuerySet[Invoice]:
    """The environment's invoices (with lines), newest first when paginated."""
    invoices = invoices_for(environment)
    if customer is not None:
        invoices = invoices.filter(customer_id=customer.pk)
    if status:
        invoices = invoices.filter(status=status)
    if subscription_id:
        invoices = invoices.filter(subscription_id=subscription_id)
    return _with_lines(invoices)


def invoice_get(environment: Environment, invoice_id: str) -> Invoice:
    return get_scoped_or_404(_with_lines(Invoice.objects.all()), environment, pk=invoice_id)
