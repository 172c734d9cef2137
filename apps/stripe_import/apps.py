from __future__ import annotations

from django.apps import AppConfig


class StripeImportConfig(AppConfig):
    name = "apps.stripe_import"
    label = "stripe_import"
    verbose_name = "Stripe import"

    def ready(self) -> None:
        # Imported subscriptions count as revenue in the Observe margin views: the
        # analytics selectors ask their registered sources (they never import this app).
        from apps.analytics.revenue_sources import register_revenue_source

        from .revenue import imported_revenue

        register_revenue_source("stripe_import", imported_revenue)
