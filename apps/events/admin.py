"""Admin: read-only views of the ledger (events are facts; never edited by hand)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Event, RecostRun


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "occurred_at",
        "environment",
        "event_name",
        "model",
        "cost_usd",
        "cost_source",
        "revenue_usd",
    )
    list_filter = ("cost_source",)
    search_fields = ("idempotency_key", "trace_id", "model")
    # Counting a partitioned ledger for the paginator would scan every partition.
    show_full_result_count = False
    list_select_related = ("environment",)


@admin.register(RecostRun)
class RecostRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "started_at",
        "status",
        "actor",
        "environment",
        "events_changed",
        "cost_change_usd",
    )
    list_filter = ("status",)
