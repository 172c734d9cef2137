from __future__ import annotations

from django.apps import AppConfig


class StripeMetersConfig(AppConfig):
    name = "apps.stripe_meters"
    label = "stripe_meters"
    verbose_name = "Stripe-driven billing"

    def ready(self) -> None:
        # After apps.entitlements in INSTALLED_APPS: its step (credits) runs before ours.
        from apps.events import pipeline

        from . import mirror, signals  # noqa: F401 - mirror registers its webhook handlers
        from .ingestion import MeterEventsStep

        pipeline.register(MeterEventsStep())
        signals.connect()
