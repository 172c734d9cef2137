"""API routes of apps.stripe_import, included under /api/ (beside apps.stripe_sync's
``v1/client/stripe`` routes)."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path(
        "v1/client/stripe/import/start",
        api.ImportStart.as_view(),
        name="api-client-stripe-import-start",
    ),
    path(
        "v1/client/stripe/import/status/<str:job_id>",
        api.ImportStatus.as_view(),
        name="api-client-stripe-import-status",
    ),
    path(
        "v1/client/stripe/import/jobs",
        api.ImportJobList.as_view(),
        name="api-client-stripe-import-jobs",
    ),
    path(
        "v1/client/stripe/import/subscriptions",
        api.ImportedSubscriptionList.as_view(),
        name="api-client-stripe-import-subscriptions",
    ),
]
