"""Error codes of the subscriptions app (rendered through ``apps.core.errors``)."""

from __future__ import annotations

SUBSCRIPTION_EXISTS = "subscription_exists"
SUBSCRIPTION_CANCELLED = "subscription_cancelled"
SUBSCRIPTION_TRIALING = "subscription_trialing"
PLAN_NOT_ACTIVE = "plan_not_active"
SAME_PLAN = "same_plan"
CURRENCY_MISMATCH = "currency_mismatch"
BILLING_TIMING_MISMATCH = "billing_timing_mismatch"
CANCELLATION_SCHEDULED = "cancellation_scheduled"
NO_SCHEDULED_CANCELLATION = "no_scheduled_cancellation"
CHANGE_PENDING = "change_pending"
NO_SCHEDULED_CHANGE = "no_scheduled_change"
