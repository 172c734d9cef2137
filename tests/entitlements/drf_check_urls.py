"""The check served by its DRF view only (no lean paths): the full stack's answer, which
the lean paths must give too (test_lean_check.py)."""

from django.urls import include, path

from apps.entitlements.api import EntitlementCheck

urlpatterns = [
    path("api/v1/client/entitlements/check", EntitlementCheck.as_view()),
    path("", include("tanso.urls")),
]
handler404 = "apps.core.api.errorpages.not_found"
handler500 = "apps.core.api.errorpages.server_error"
