"""Every API route, under /api/: each app's routes live in its own urls module."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    # The entitlement check is the integrators' hot path: resolved first.
    path("", include("apps.entitlements.urls")),
    path("", include("apps.onboarding.urls")),
    path("", include("apps.apikeys.urls")),
    path("", include("apps.customers.urls")),
    path("", include("apps.features.urls")),
    path("", include("apps.pricing.urls")),
    path("", include("apps.events.urls")),
    path("", include("apps.accounts.urls")),
    path("", include("apps.analytics.urls")),
    path("", include("apps.recommendations.urls")),
    path("", include("apps.plans.urls")),
    path("", include("apps.subscriptions.urls")),
    path("", include("apps.credits.urls")),
    path("", include("apps.billing.urls")),
    path("", include("apps.simulations.urls")),
    path("", include("apps.stripe_sync.urls")),
    path("", include("apps.stripe_import.urls")),
    path("", include("apps.alerts.urls")),
]
