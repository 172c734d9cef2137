from __future__ import annotations

from django.apps import AppConfig


class StripeSyncConfig(AppConfig):
    name = "apps.stripe_sync"
    label = "stripe_sync"
    verbose_name = "Stripe"

    def ready(self) -> None:
        # Register this app's webhook handlers and billing hooks (other apps register
        # theirs the same way, from their own ready()), and take verified webhooks from
        # dj-stripe's webhook_pre_process signal.
        from . import handlers, webhooks  # noqa: F401

        webhooks.connect()
