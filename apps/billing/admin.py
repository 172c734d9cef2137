"""Platform admin: invoices of every tenant with their lines (read-only: invoices are
written by the billing services only)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .models import BillingSettings, Invoice, InvoiceLine, InvoiceSequence, SubscriptionBilling


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    fields = (
        "position",
        "kind",
        "description",
        "quantity",
        "amount_exact",
        "amount_minor",
        "service_start",
        "service_end",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = (
        "number",
        "customer",
        "type",
        "status",
        "total_minor",
        "currency",
        "period_start",
        "due_at",
        "environment",
    )
    list_filter = ("status", "type", "reason")
    search_fields = ("number", "customer__reference_id")
    inlines = [InvoiceLineInline]
    readonly_fields = [f.name for f in Invoice._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(BillingSettings)
class BillingSettingsAdmin(admin.ModelAdmin):
    list_display = ("environment", "payment_terms_days", "grace_period_days", "stripe_mode")


@admin.register(InvoiceSequence)
class InvoiceSequenceAdmin(admin.ModelAdmin):
    list_display = ("environment", "last_number")
    readonly_fields = ("environment", "last_number")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(SubscriptionBilling)
class SubscriptionBillingAdmin(admin.ModelAdmin):
    list_display = ("subscription", "billed_through", "updated_at")
    readonly_fields = ("subscription", "environment", "billed_through", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
