"""Admin: credit models and allocations are editable; pools, grants, the ledger, weights and
prices are read-only here (they change only through the services, which keep the ledger)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import (
    CreditGrant,
    CreditModel,
    CreditPool,
    CreditPrice,
    CreditTransaction,
    CreditWeight,
    PlanCreditAllocation,
)


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CreditModel)
class CreditModelAdmin(admin.ModelAdmin):
    list_display = (
        "denomination",
        "name",
        "environment",
        "hard_limit",
        "rollover_policy",
        "rollover_cap",
        "grant_expiry_months",
        "archived_at",
    )
    list_filter = ("hard_limit", "rollover_policy")
    search_fields = ("denomination", "name")
    list_select_related = ("environment__organization",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # archive instead: pools refer to it

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Pools are keyed by the denomination and copy the rules when created.
        return ("environment", "denomination") if obj is not None else ()


@admin.register(PlanCreditAllocation)
class PlanCreditAllocationAdmin(admin.ModelAdmin):
    list_display = ("plan_key", "credit_model", "credit_amount", "grant_expiry_months", "priority")
    search_fields = ("plan_key", "credit_model__denomination")
    list_select_related = ("credit_model",)
    raw_id_fields = ("credit_model",)


@admin.register(CreditPool)
class CreditPoolAdmin(_ReadOnly):
    list_display = (
        "id",
        "customer",
        "denomination",
        "balance",
        "hard_limit",
        "rollover_policy",
        "total_granted",
        "total_consumed",
        "current_period_end",
    )
    list_filter = ("hard_limit", "rollover_policy")
    search_fields = ("denomination", "customer__reference_id")
    list_select_related = ("customer",)


@admin.register(CreditGrant)
class CreditGrantAdmin(_ReadOnly):
    list_display = (
        "id",
        "pool",
        "grant_type",
        "amount",
        "remaining",
        "priority",
        "expires_at",
        "granted_at",
    )
    list_filter = ("grant_type",)
    search_fields = ("source_ref", "pool__customer__reference_id", "pool__denomination")
    list_select_related = ("pool__customer",)


@admin.register(CreditTransaction)
class CreditTransactionAdmin(_ReadOnly):
    list_display = (
        "pool",
        "sequence",
        "transaction_type",
        "amount",
        "balance_after",
        "shortfall",
        "event_ref",
        "created_at",
    )
    list_filter = ("transaction_type",)
    search_fields = ("event_ref", "idempotency_key", "pool__customer__reference_id")
    list_select_related = ("pool__customer",)


@admin.register(CreditWeight)
class CreditWeightAdmin(_ReadOnly):
    list_display = ("feature", "model", "credits_per_unit", "effective_from", "created_by")
    search_fields = ("feature__key", "model")
    list_select_related = ("feature",)


@admin.register(CreditPrice)
class CreditPriceAdmin(_ReadOnly):
    list_display = ("denomination", "currency", "price_per_credit", "effective_from")
    search_fields = ("denomination",)
