from __future__ import annotations

from django.contrib import admin

from .models import ApiKey, ApiKeySpend, IdempotencyRecord


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are issued by the product, never typed in here; the hash is never shown."""

    list_display = (
        "prefix",
        "hint",
        "kind",
        "name",
        "environment",
        "status",
        "last_used_at",
        "created_at",
    )
    list_filter = ("kind", "environment__kind")
    search_fields = ("prefix", "name", "environment__organization__name", "id")
    list_select_related = ("environment__organization",)
    exclude = ("secret_hash",)
    readonly_fields = (
        "id",
        "kind",
        "prefix",
        "hint",
        "environment",
        "customer",
        "created_at",
        "created_by",
        "last_used_at",
        "rotated_from",
    )

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(ApiKeySpend)
class ApiKeySpendAdmin(admin.ModelAdmin):
    list_display = ("api_key", "window_start", "spent_usd")
    list_select_related = ("api_key",)
    search_fields = ("api_key__prefix",)


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ("key", "api_key", "environment", "status_code", "created_at")
    search_fields = ("key",)
    exclude = ("response_body",)
    list_select_related = ("api_key", "environment__organization")
