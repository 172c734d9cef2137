"""API routes of apps.plans, included under /api/."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("v1/client/plans", api.PlanListCreate.as_view(), name="api-client-plans"),
    path("v1/client/plans/<str:plan_ref>", api.PlanDetail.as_view(), name="api-client-plan"),
    path(
        "v1/client/plans/<str:plan_ref>/activate",
        api.PlanActivate.as_view(),
        name="api-client-plan-activate",
    ),
    path(
        "v1/client/plans/<str:plan_ref>/archive",
        api.PlanArchive.as_view(),
        name="api-client-plan-archive",
    ),
    path(
        "v1/client/plans/<str:plan_ref>/features",
        api.PlanFeatures.as_view(),
        name="api-client-plan-features",
    ),
    path(
        "v1/client/plans/<str:plan_ref>/features/<str:feature_key>",
        api.PlanFeatureDetail.as_view(),
        name="api-client-plan-feature",
    ),
]
