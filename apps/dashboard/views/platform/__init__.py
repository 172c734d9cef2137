"""Platform pages: the catalog (customers, features, plans and their pricing rules),
subscriptions, invoices, credits, and the platform part of a customer's page; one module
per area.

Every read goes through the apps' selectors for ``request.environment``; every write
through their services (the same operations as the API). Everyone reads; changing
anything needs the member role (403 otherwise). One view, two renderings: the page, or
(htmx) only its partial. Irreversible actions ask first (``apps.dashboard.confirm``).
"""

from .catalog import customer_edit, customer_new, feature_edit, feature_list
from .credits import (
    allocation_new,
    allocation_remove,
    credit_grant_new,
    credit_model_archive_view,
    credit_model_new,
    credit_models,
    credit_pool,
    credit_pool_deduct,
    credit_pool_grant,
    credit_pools,
)
from .customer import customer_plans, customer_platform
from .invoices import invoice_detail, invoice_list, invoice_pay
from .plans import plan_detail, plan_list, plan_new, plan_rule, plan_rule_remove, plan_status
from .subscriptions import (
    subscription_action,
    subscription_detail,
    subscription_list,
    subscription_new,
)

__all__ = [
    "allocation_new",
    "allocation_remove",
    "credit_grant_new",
    "credit_model_archive_view",
    "credit_model_new",
    "credit_models",
    "credit_pool",
    "credit_pool_deduct",
    "credit_pool_grant",
    "credit_pools",
    "customer_edit",
    "customer_new",
    "customer_plans",
    "customer_platform",
    "feature_edit",
    "feature_list",
    "invoice_detail",
    "invoice_list",
    "invoice_pay",
    "plan_detail",
    "plan_list",
    "plan_new",
    "plan_rule",
    "plan_rule_remove",
    "plan_status",
    "subscription_action",
    "subscription_detail",
    "subscription_list",
    "subscription_new",
]
