"""API routes of apps.pricing, included under /api/."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("model-prices", api.ModelPriceList.as_view(), name="api-model-prices"),
    path(
        "model-price-overrides",
        api.ModelPriceOverrideListCreate.as_view(),
        name="api-model-price-overrides",
    ),
    path(
        "model-price-overrides/<str:override_id>",
        api.ModelPriceOverrideDetail.as_view(),
        name="api-model-price-override",
    ),
]
