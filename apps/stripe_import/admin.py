"""Platform admin: import jobs and what they recorded (read-only: the import writes them)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .models import (
    ImportedCustomer,
    ImportedPrice,
    ImportedProduct,
    ImportedSubscription,
    ImportJob,
)


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ImportJob)
class ImportJobAdmin(ReadOnly):
    list_display = (
        "id",
        "environment",
        "status",
        "phase",
        "total",
        "processed",
        "failed",
        "created_at",
    )
    list_filter = ("status",)


@admin.register(ImportedCustomer)
class ImportedCustomerAdmin(ReadOnly):
    list_display = ("stripe_id", "environment", "customer", "matched_by", "updated_at")
    search_fields = ("stripe_id", "email")


@admin.register(ImportedProduct)
class ImportedProductAdmin(ReadOnly):
    list_display = ("stripe_id", "environment", "name", "active")
    search_fields = ("stripe_id", "name")


@admin.register(ImportedPrice)
class ImportedPriceAdmin(ReadOnly):
    list_display = ("stripe_id", "environment", "kind", "currency", "unit_amount", "interval")
    search_fields = ("stripe_id",)


@admin.register(ImportedSubscription)
class ImportedSubscriptionAdmin(ReadOnly):
    list_display = (
        "stripe_id",
        "environment",
        "customer",
        "status",
        "currency",
        "amount",
        "interval",
    )
    search_fields = ("stripe_id", "stripe_customer_id")
