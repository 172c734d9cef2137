"""Platform admin: customers of every tenant (the admin site is for whoever runs Tanso)."""

from __future__ import annotations

from django.contrib import admin

from .models import Customer


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = (
        "reference_id",
        "email",
        "first_name",
        "last_name",
        "environment",
        "source",
        "created_at",
    )
    list_filter = ("source", "environment__kind", "environment")
    list_select_related = ("environment__organization",)
    search_fields = ("reference_id", "email", "first_name", "last_name", "stripe_customer_id")
    raw_id_fields = ("environment",)
    readonly_fields = ("id", "created_at", "updated_at")
    ordering = ("-created_at",)
    show_full_result_count = False
