"""The platform part of a customer's page (subscriptions, usage against the plan's limits,
credit pools, invoices) and the plan column of the customers table."""

from __future__ import annotations

from typing import Any

from apps.billing import selectors as billing
from apps.core.tenancy import scoped
from apps.credits import selectors as credits
from apps.customers.models import Customer
from apps.entitlements.selectors import feature_usage
from apps.subscriptions import selectors as subscriptions
from apps.subscriptions.models import Subscription

from .invoices import CUSTOMER_INVOICES, invoice_amount


def customer_platform(environment: Any, reference_id: str) -> dict[str, Any]:
    """Subscriptions, usage against the plan's limits, credit pools and invoices of a customer
    (empty when the reference names no customer)."""
    customer = scoped(Customer, environment).filter(reference_id=reference_id).first()
    if customer is None:
        return {"platform_customer": None}
    return {
        "platform_customer": customer,
        "customer_subscriptions": list(
            subscriptions.subscriptions_search(environment, customer=customer).order_by(
                "-created_at"
            )[:10]
        ),
        "customer_usage": [d for d in feature_usage(environment, reference_id) if d.usage],
        "customer_pools": (pools := credits.customer_credit_usage(environment, customer)),
        "customer_pool_groups": [(customer, pools)],
        "customer_invoices": [
            (inv, invoice_amount(inv))
            for inv in billing.invoices_search(environment, customer=customer).order_by(
                "-issued_at"
            )[:CUSTOMER_INVOICES]
        ],
    }


def customer_plans(environment: Any, reference_ids: list[str]) -> dict[str, Subscription]:
    """The newest subscription of each of these customers (for the customers table)."""
    rows = (
        subscriptions.subscriptions_for(environment)
        .filter(customer__reference_id__in=reference_ids)
        .select_related("customer", "plan")
        .order_by("customer_id", "-created_at")
    )
    found: dict[str, Subscription] = {}
    for sub in rows:
        found.setdefault(sub.customer.reference_id, sub)
    return found
