"""Every API route, under /api/."""

from __future__ import annotations

from django.urls import path

from apps.apikeys import api as keys
from apps.onboarding import api as onboarding

urlpatterns = [
    path("signup", onboarding.Signup.as_view(), name="api-signup"),
    path("sdk-keys", keys.SdkKeyListCreate.as_view(), name="api-sdk-keys"),
    path("sdk-keys/me", keys.SdkKeyMe.as_view(), name="api-sdk-keys-me"),
    path("sdk-keys/<str:key_id>", keys.SdkKeyDetail.as_view(), name="api-sdk-key"),
    path("sdk-keys/<str:key_id>/rotate", keys.SdkKeyRotate.as_view(), name="api-sdk-key-rotate"),
]
