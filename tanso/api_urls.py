"""Every API route, under /api/."""

from __future__ import annotations

from django.urls import include, path

from apps.apikeys import api as keys
from apps.customers import api as customers
from apps.events import api as events
from apps.features import api as features
from apps.onboarding import api as onboarding
from apps.pricing import api as pricing

urlpatterns = [
    # The entitlement check is the integrators' hot path: resolved first.
    path("", include("apps.entitlements.urls")),
    path("signup", onboarding.Signup.as_view(), name="api-signup"),
    path("plan", onboarding.AccountPlan.as_view(), name="api-plan"),
    path("sdk-keys", keys.SdkKeyListCreate.as_view(), name="api-sdk-keys"),
    path("sdk-keys/me", keys.SdkKeyMe.as_view(), name="api-sdk-keys-me"),
    path("sdk-keys/<str:key_id>", keys.SdkKeyDetail.as_view(), name="api-sdk-key"),
    path("sdk-keys/<str:key_id>/rotate", keys.SdkKeyRotate.as_view(), name="api-sdk-key-rotate"),
    path(
        "v1/client/customers/<str:reference_id>/keys",
        keys.CustomerKeys.as_view(),
        name="api-client-customer-keys",
    ),
    path(
        "v1/client/customers/<str:reference_id>/keys/<str:key_id>",
        keys.CustomerKeyRevoke.as_view(),
        name="api-client-customer-key",
    ),
    path(
        "v1/client/customers/<str:reference_id>/keys/<str:key_id>/rotate",
        keys.CustomerKeyRotate.as_view(),
        name="api-client-customer-key-rotate",
    ),
    # Catalog. Path references use <str:>, so they cannot contain "/" (see apps/customers/api.py).
    path(
        "v1/client/customers",
        customers.CustomerListCreate.as_view(),
        name="api-client-customers",
    ),
    path(
        "v1/client/customers/<str:reference_id>",
        customers.CustomerDetail.as_view(),
        name="api-client-customer",
    ),
    path("v1/client/features", features.FeatureListCreate.as_view(), name="api-client-features"),
    path(
        "v1/client/features/<str:feature_key>",
        features.FeatureDetail.as_view(),
        name="api-client-feature",
    ),
    path("model-prices", pricing.ModelPriceList.as_view(), name="api-model-prices"),
    path(
        "model-price-overrides",
        pricing.ModelPriceOverrideListCreate.as_view(),
        name="api-model-price-overrides",
    ),
    path(
        "model-price-overrides/<str:override_id>",
        pricing.ModelPriceOverrideDetail.as_view(),
        name="api-model-price-override",
    ),
    path("v1/client/events", events.ClientEventCreate.as_view(), name="api-client-events"),
    path("events/ingest", events.EventsIngest.as_view(), name="api-events-ingest"),
    path("events/recost", events.EventsRecost.as_view(), name="api-events-recost"),
    path("events/recost-runs", events.RecostRunList.as_view(), name="api-events-recost-runs"),
    # Newer apps keep their routes in their own urls module.
    path("", include("apps.accounts.api_urls")),
    path("", include("apps.analytics.urls")),
    path("", include("apps.plans.urls")),
    path("", include("apps.subscriptions.urls")),
    path("", include("apps.credits.urls")),
    path("", include("apps.billing.urls")),
    path("", include("apps.stripe_sync.urls")),
    path("", include("apps.stripe_import.urls")),
]
