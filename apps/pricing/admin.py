"""Admin: the catalog is read-only here (it changes only through a sync); overrides are editable."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import ModelPriceOverride, PriceModel, PriceProvider, PriceVersion


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PriceProvider)
class PriceProviderAdmin(_ReadOnly):
    list_display = ("provider_id", "name", "position", "is_listed", "updated_at")
    list_filter = ("is_listed",)
    search_fields = ("provider_id", "name")


@admin.register(PriceModel)
class PriceModelAdmin(_ReadOnly):
    list_display = ("model_id", "name", "provider", "context_window", "deprecated", "is_listed")
    list_filter = ("is_listed", "deprecated", "provider")
    search_fields = ("model_id", "name", "provider__provider_id")
    list_select_related = ("provider",)


@admin.register(PriceVersion)
class PriceVersionAdmin(_ReadOnly):
    list_display = (
        "id",
        "model",
        "effective_from",
        "effective_to",
        "input_mtok",
        "output_mtok",
        "cache_read_mtok",
        "cache_write_mtok",
        "has_tiers",
        "is_conditional",
    )
    list_filter = (
        "has_tiers",
        "is_conditional",
        "model__provider",
        ("effective_to", admin.EmptyFieldListFilter),
    )
    search_fields = ("model__model_id", "model__provider__provider_id", "content_hash")
    list_select_related = ("model__provider",)
    date_hierarchy = "effective_from"


@admin.register(ModelPriceOverride)
class ModelPriceOverrideAdmin(admin.ModelAdmin):
    # Admin saves bypass the service; the caches notice within OVERRIDES_MAX_AGE seconds.
    list_display = (
        "id",
        "environment",
        "provider",
        "model",
        "input_mtok",
        "output_mtok",
        "discount_percent",
        "updated_at",
    )
    list_filter = ("environment__kind",)
    search_fields = ("provider", "model", "environment__organization__name")
    list_select_related = ("environment__organization",)
    raw_id_fields = ("environment",)
