"""API routes of apps.gateway, included under /api/ (the proxy itself is ASGI: asgi.py)."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("v1/gateway/credentials", api.CredentialListSet.as_view(), name="api-gateway-credentials"),
    path(
        "v1/gateway/credentials/<uuid:credential_id>",
        api.CredentialDetail.as_view(),
        name="api-gateway-credential",
    ),
    path("v1/gateway/routes", api.RouteListSet.as_view(), name="api-gateway-routes"),
    path("v1/gateway/routes/<uuid:route_id>", api.RouteDetail.as_view(), name="api-gateway-route"),
]
