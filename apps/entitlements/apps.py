from __future__ import annotations

from django.apps import AppConfig


class EntitlementsConfig(AppConfig):
    name = "apps.entitlements"
    label = "entitlements"
    verbose_name = "Entitlements"

    def ready(self) -> None:
        # Ingestion calls us through its step registry; the ledger never imports this app.
        from apps.events import pipeline

        from . import signals
        from .ingestion import EntitlementsStep

        pipeline.register(EntitlementsStep())
        signals.connect()
