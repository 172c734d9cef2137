from __future__ import annotations

from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "apps.subscriptions"
    label = "subscriptions"
    verbose_name = "Subscriptions"

    def ready(self) -> None:
        # The plan-price advice reads the live subscribers through a registered source
        # (recommendations never import this app: STYLE.md layers).
        from apps.recommendations.advice.plans import register_subscriber_source

        from .selectors import live_subscribers

        register_subscriber_source("subscriptions", live_subscribers)
