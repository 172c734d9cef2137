from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.accounts import views as accounts
from apps.core import views as core
from apps.stripe_sync import views as stripe_webhooks

admin.site.site_header = "Tanso administration"

urlpatterns = [
    path("", core.landing, name="landing"),
    path("healthz", core.healthz, name="healthz"),
    path("readyz", core.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    # allauth's login page with lockouts answered 429 (apps/accounts/views.py).
    path("accounts/login/", accounts.login, name="account_login"),
    path(
        "accounts/verification/resend/",
        accounts.resend_verification,
        name="account_resend_verification",
    ),
    path("accounts/", include("allauth.urls")),
    path("invitations/", include("apps.accounts.page_urls")),
    path("onboarding/", include("apps.onboarding.page_urls")),
    path("dashboard/stripe/import/", include("apps.stripe_import.page_urls")),
    path("dashboard/", include("apps.dashboard.urls")),
    path("invoices/", include("apps.billing.page_urls")),
    # Stripe webhooks: dj-stripe's receiver behind our limits (apps/stripe_sync/views.py),
    # resolved before dj-stripe's own route, which stays for reverse() (the endpoint url).
    path("stripe/webhook/<uuid:uuid>/", stripe_webhooks.webhook, name="stripe-webhook"),
    path("stripe/", include("djstripe.urls", namespace="djstripe")),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("tanso.api_urls")),
]

handler404 = "apps.core.api.errorpages.not_found"
handler500 = "apps.core.api.errorpages.server_error"
