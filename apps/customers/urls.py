"""API routes of apps.customers, included under /api/."""

from __future__ import annotations

from django.urls import path

from . import api

# Path references use <str:>, so they cannot contain "/" (see api.py).
urlpatterns = [
    path(
        "v1/client/customers",
        api.CustomerListCreate.as_view(),
        name="api-client-customers",
    ),
    path(
        "v1/client/customers/<str:reference_id>",
        api.CustomerDetail.as_view(),
        name="api-client-customer",
    ),
]
