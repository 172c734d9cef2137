from __future__ import annotations

from django.apps import AppConfig


class EntitlementsConfig(AppConfig):
    name = "apps.entitlements"
    label = "entitlements"
    verbose_name = "Entitlements"

    def ready(self) -> None:
        # Ingestion runs our step from settings.INGESTION_STEPS; the ledger never imports us.
        from . import signals

        signals.connect()
