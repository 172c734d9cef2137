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
