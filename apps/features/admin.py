"""Platform admin: features of every tenant."""

from __future__ import annotations

from django.contrib import admin

from .models import Feature


@admin.register(Feature)
class FeatureAdmin(admin.ModelAdmin):
    list_display = (
        "key",
        "name",
        "unit_label",
        "is_enabled",
        "environment",
        "source",
        "created_at",
    )
    list_filter = ("source", "is_enabled", "environment__kind", "environment")
    list_select_related = ("environment__organization",)
    search_fields = ("key", "name")
    raw_id_fields = ("environment",)
    readonly_fields = ("id", "created_at", "updated_at")
    ordering = ("-created_at",)
    show_full_result_count = False
