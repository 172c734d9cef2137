"""API routes of apps.stripe_sync, included under /api/. The webhook receiver is
dj-stripe's (``/stripe/webhook/<uuid>/``, in tanso/urls.py)."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("v1/client/stripe", api.StripeConnectionView.as_view(), name="api-client-stripe"),
    path("v1/client/stripe/connect", api.StripeConnect.as_view(), name="api-client-stripe-connect"),
    path(
        "v1/client/stripe/invoices/<str:invoice_id>",
        api.StripeInvoiceStatus.as_view(),
        name="api-client-stripe-invoice",
    ),
    path(
        "v1/client/stripe/invoices/<str:invoice_id>/push",
        api.StripeInvoicePush.as_view(),
        name="api-client-stripe-invoice-push",
    ),
]
