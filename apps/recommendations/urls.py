"""API routes of apps.recommendations, included under /api/."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("recommendations", api.RecommendationList.as_view(), name="api-recommendations"),
    path(
        "recommendations/compute",
        api.RecommendationCompute.as_view(),
        name="api-recommendations-compute",
    ),
    path(
        "recommendations/compute-runs/<str:run_id>",
        api.ComputeRunDetail.as_view(),
        name="api-recommendations-run",
    ),
    path(
        "recommendations/comparable-models",
        api.ComparableModelList.as_view(),
        name="api-recommendations-comparable-models",
    ),
    path(
        "recommendations/comparable-models/<str:row_id>",
        api.ComparableModelDetail.as_view(),
        name="api-recommendations-comparable-model",
    ),
    path(
        "recommendations/<str:recommendation_id>",
        api.RecommendationDetail.as_view(),
        name="api-recommendation",
    ),
    path(
        "recommendations/<str:recommendation_id>/dismiss",
        api.RecommendationDismiss.as_view(),
        name="api-recommendation-dismiss",
    ),
    path(
        "recommendations/<str:recommendation_id>/snooze",
        api.RecommendationSnooze.as_view(),
        name="api-recommendation-snooze",
    ),
    path(
        "recommendations/<str:recommendation_id>/apply",
        api.RecommendationApply.as_view(),
        name="api-recommendation-apply",
    ),
    path(
        "recommendations/<str:recommendation_id>/reopen",
        api.RecommendationReopen.as_view(),
        name="api-recommendation-reopen",
    ),
]
