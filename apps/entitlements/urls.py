"""API routes of apps.entitlements, included under /api/.

``entitlements/check`` comes first: its POST is the check; a GET of it is the
entitlement list of a customer whose reference is "check". References in paths
use ``<str:>``, so they cannot contain "/" (as in apps/customers/api.py).
"""

from __future__ import annotations

from django.urls import path

from . import api

P = "v1/client/entitlements"

urlpatterns = [
    path(f"{P}/check", api.EntitlementCheck.as_view(), name="api-entitlement-check"),
    path(P, api.EntitlementEvaluate.as_view(), name="api-entitlement-evaluate"),
    path(
        f"{P}/reservations/<str:reservation_id>/release",
        api.ReservationRelease.as_view(),
        name="api-reservation-release",
    ),
    path(
        f"{P}/<str:reference_id>",
        api.CustomerEntitlements.as_view(),
        name="api-customer-entitlements",
    ),
    path(
        f"{P}/<str:reference_id>/<str:feature_key>",
        api.EntitlementGet.as_view(),
        name="api-entitlement-get",
    ),
]
