"""API routes of apps.features, included under /api/."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("v1/client/features", api.FeatureListCreate.as_view(), name="api-client-features"),
    path(
        "v1/client/features/<str:feature_key>",
        api.FeatureDetail.as_view(),
        name="api-client-feature",
    ),
]
