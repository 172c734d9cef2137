"""API routes of apps.apikeys, included under /api/."""

from __future__ import annotations

from django.urls import path

from . import api

# "sdk-keys/me" comes before "sdk-keys/<key_id>", which would otherwise take it.
urlpatterns = [
    path("sdk-keys", api.SdkKeyListCreate.as_view(), name="api-sdk-keys"),
    path("sdk-keys/me", api.SdkKeyMe.as_view(), name="api-sdk-keys-me"),
    path("sdk-keys/<str:key_id>", api.SdkKeyDetail.as_view(), name="api-sdk-key"),
    path("sdk-keys/<str:key_id>/rotate", api.SdkKeyRotate.as_view(), name="api-sdk-key-rotate"),
    path(
        "v1/client/customers/<str:reference_id>/keys",
        api.CustomerKeys.as_view(),
        name="api-client-customer-keys",
    ),
    path(
        "v1/client/customers/<str:reference_id>/keys/<str:key_id>",
        api.CustomerKeyRevoke.as_view(),
        name="api-client-customer-key",
    ),
    path(
        "v1/client/customers/<str:reference_id>/keys/<str:key_id>/rotate",
        api.CustomerKeyRotate.as_view(),
        name="api-client-customer-key-rotate",
    ),
]
