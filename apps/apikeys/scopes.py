"""The scope vocabulary (PRODUCT.md §3.4) and what each kind of key holds."""

from __future__ import annotations

EVENTS_WRITE = "events.write"
EVENTS_READ = "events.read"
USAGE_READ = "usage.read"
USAGE_WRITE = "usage.write"
CUSTOMERS_READ = "customers.read"
CUSTOMERS_WRITE = "customers.write"
BILLING_READ = "billing.read"
BILLING_WRITE = "billing.write"
MODELS_READ = "models.read"
ALERTS_READ = "alerts.read"
ALERTS_WRITE = "alerts.write"
RECOMMENDATIONS_READ = "recommendations.read"
RECOMMENDATIONS_WRITE = "recommendations.write"
SIMULATIONS_READ = "simulations.read"
SIMULATIONS_WRITE = "simulations.write"
PROXY_CHAT = "proxy.chat"
ADMIN = "admin"

ALL_SCOPES: tuple[str, ...] = (
    EVENTS_WRITE,
    EVENTS_READ,
    USAGE_READ,
    USAGE_WRITE,
    CUSTOMERS_READ,
    CUSTOMERS_WRITE,
    BILLING_READ,
    BILLING_WRITE,
    MODELS_READ,
    ALERTS_READ,
    ALERTS_WRITE,
    RECOMMENDATIONS_READ,
    RECOMMENDATIONS_WRITE,
    SIMULATIONS_READ,
    SIMULATIONS_WRITE,
    PROXY_CHAT,
    ADMIN,
)

# What `POST /api/signup` may grant without a human in the loop.
SIGNUP_ALLOWED: frozenset[str] = frozenset(
    {
        PROXY_CHAT,
        USAGE_READ,
        EVENTS_READ,
        EVENTS_WRITE,
        CUSTOMERS_READ,
        BILLING_READ,
        RECOMMENDATIONS_READ,
        MODELS_READ,
    }
)
SIGNUP_DEFAULT: tuple[str, ...] = (USAGE_READ, BILLING_READ)

# Customer-pinned keys (ck_) speak their own small vocabulary.
CUSTOMER_READ = "read"
CUSTOMER_PURCHASE = "purchase"
CUSTOMER_SCOPES: tuple[str, ...] = (CUSTOMER_READ, CUSTOMER_PURCHASE)

# What each scope lets a key do, in words (the dashboard's key form shows them).
SCOPE_DESCRIPTIONS: dict[str, str] = {
    EVENTS_WRITE: "record events (single and batch ingestion)",
    EVENTS_READ: "read raw events and traces",
    USAGE_READ: "read totals, features, plans and entitlement checks",
    USAGE_WRITE: "change features, plans, model prices; re-cost events",
    CUSTOMERS_READ: "read customers and subscriptions",
    CUSTOMERS_WRITE: "create and change customers, subscriptions, customer keys",
    BILLING_READ: "read invoices, credits, billing settings, Stripe status",
    BILLING_WRITE: "grant credits, mark invoices paid, change billing and Stripe",
    MODELS_READ: "read model prices and per-model figures",
    ALERTS_READ: "read alerts",
    ALERTS_WRITE: "create and change alerts",
    RECOMMENDATIONS_READ: "read and compute recommendations",
    RECOMMENDATIONS_WRITE: "dismiss, snooze, apply recommendations; edit comparable models",
    SIMULATIONS_READ: "read pricing simulations and their results",
    SIMULATIONS_WRITE: "run, preview and cancel pricing simulations",
    PROXY_CHAT: "call models through the LLM gateway",
    ADMIN: "manage API keys, members, the organization and read the audit log",
    CUSTOMER_READ: "customer keys: read their own customer's records",
    CUSTOMER_PURCHASE: "customer keys: buy for their own customer",
}
