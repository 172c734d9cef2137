from __future__ import annotations

from django.contrib import admin

from .models import (
    MeterEvent,
    StripeCustomer,
    StripeInvoice,
    StripeMeter,
    StripePlan,
    StripeRulePrice,
    StripeSubscription,
)


@admin.register(MeterEvent)
class MeterEventAdmin(admin.ModelAdmin):
    list_display = ("id", "environment", "event_id", "value", "status", "attempts", "last_error")
    list_filter = ("status",)
    search_fields = ("event_id",)
    readonly_fields = [f.name for f in MeterEvent._meta.fields]


for model in (
    StripeCustomer,
    StripeMeter,
    StripePlan,
    StripeRulePrice,
    StripeSubscription,
    StripeInvoice,
):
    admin.site.register(model)
