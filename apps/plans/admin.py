"""Platform admin: plans of every tenant, with their pricing rules inline."""

from __future__ import annotations

from django.contrib import admin

from .models import Plan, PlanFeatureRule


class PlanFeatureRuleInline(admin.TabularInline):
    model = PlanFeatureRule
    extra = 0
    fields = (
        "feature",
        "is_enabled",
        "model",
        "unit_price",
        "package_size",
        "tiers",
        "max_usage",
        "reset_interval",
        "overage_unit_price",
        "credit_denomination",
        "credits_per_unit",
    )
    raw_id_fields = ("feature",)
    show_change_link = True


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = (
        "key",
        "name",
        "status",
        "price_amount",
        "currency",
        "interval_months",
        "billing_timing",
        "environment",
        "created_at",
    )
    list_filter = ("status", "interval_months", "billing_timing", "environment__kind")
    list_select_related = ("environment__organization",)
    search_fields = ("key", "name")
    raw_id_fields = ("environment",)
    readonly_fields = ("id", "activated_at", "archived_at", "created_at", "updated_at")
    ordering = ("-created_at",)
    inlines = (PlanFeatureRuleInline,)
    show_full_result_count = False


@admin.register(PlanFeatureRule)
class PlanFeatureRuleAdmin(admin.ModelAdmin):
    list_display = ("plan", "feature", "model", "is_enabled", "max_usage", "reset_interval")
    list_filter = ("model", "reset_interval", "is_enabled")
    list_select_related = ("plan", "feature")
    search_fields = ("plan__key", "feature__key")
    raw_id_fields = ("environment", "plan", "feature")
    readonly_fields = ("id", "created_at", "updated_at")
    ordering = ("-created_at",)
    show_full_result_count = False
