"""API routes of apps.onboarding (programmatic signup, the account plan), included under /api/."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("signup", api.Signup.as_view(), name="api-signup"),
    path("plan", api.AccountPlan.as_view(), name="api-plan"),
]
