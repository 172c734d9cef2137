"""Platform admin: subscriptions of every tenant, with their plan changes inline."""

from __future__ import annotations

from django.contrib import admin

from .models import Subscription, SubscriptionChange


class SubscriptionChangeInline(admin.TabularInline):
    model = SubscriptionChange
    fk_name = "subscription"
    extra = 0
    can_delete = False
    fields = (
        "change_type",
        "timing",
        "status",
        "from_plan",
        "to_plan",
        "effective_at",
        "requested_at",
        "fulfilled_at",
        "cancelled_at",
    )
    readonly_fields = fields


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "customer",
        "plan",
        "status",
        "current_period_start",
        "current_period_end",
        "cancel_at",
        "environment",
        "created_at",
    )
    list_filter = ("status", "cancel_mode", "interval_months", "environment__kind")
    list_select_related = ("customer", "plan", "environment__organization")
    search_fields = ("customer__reference_id", "plan__key")
    raw_id_fields = ("environment", "customer", "plan")
    readonly_fields = ("id", "created_at", "updated_at")
    ordering = ("-created_at",)
    inlines = (SubscriptionChangeInline,)
    show_full_result_count = False


@admin.register(SubscriptionChange)
class SubscriptionChangeAdmin(admin.ModelAdmin):
    list_display = ("subscription", "change_type", "timing", "status", "from_plan", "to_plan")
    list_filter = ("change_type", "timing", "status")
    list_select_related = ("subscription", "from_plan", "to_plan")
    raw_id_fields = ("environment", "subscription", "from_plan", "to_plan")
    readonly_fields = ("id", "requested_at")
    ordering = ("-requested_at",)
    show_full_result_count = False
