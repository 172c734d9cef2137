from __future__ import annotations

from django.contrib import admin

from .models import Reservation


@admin.register(Reservation)
class ReservationAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "environment",
        "customer",
        "feature",
        "units",
        "credits",
        "status",
        "expires_at",
    )
    list_filter = ("status",)
    search_fields = ("id", "customer__reference_id", "feature__key")
    raw_id_fields = ("customer", "feature")
    readonly_fields = [f.name for f in Reservation._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False
