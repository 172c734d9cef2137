from __future__ import annotations

from django.apps import AppConfig


class StripeMetersConfig(AppConfig):
    name = "apps.stripe_meters"
    label = "stripe_meters"
    verbose_name = "Stripe-driven billing"

    def ready(self) -> None:
        # Ingestion runs our step from settings.INGESTION_STEPS (after the entitlements one).
        from . import mirror, signals  # noqa: F401 - mirror registers its webhook handlers

        signals.connect()
