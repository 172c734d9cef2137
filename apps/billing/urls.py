"""API routes of apps.billing, included under /api/ (the reference API's paths)."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("v1/client/billing/invoices", api.InvoiceList.as_view(), name="api-client-invoices"),
    path(
        "v1/client/billing/revenue",
        api.RevenueAttribution.as_view(),
        name="api-client-billing-revenue",
    ),
    path(
        "v1/client/billing/settings",
        api.BillingSettingsView.as_view(),
        name="api-client-billing-settings",
    ),
    path(
        "v1/client/billing/upcoming/<str:reference_id>",
        api.CustomerUpcomingInvoice.as_view(),
        name="api-client-customer-upcoming-invoice",
    ),
    # Before the customer routes: "<id>/mark-paid" would otherwise read as "<ref>/<id>".
    path(
        "v1/client/billing/invoices/<str:invoice_id>/mark-paid",
        api.InvoiceMarkPaid.as_view(),
        name="api-client-invoice-mark-paid",
    ),
    path(
        "v1/client/billing/invoices/<str:invoice_id>/void",
        api.InvoiceVoid.as_view(),
        name="api-client-invoice-void",
    ),
    path(
        "v1/client/billing/invoices/<str:reference_id>",
        api.CustomerInvoices.as_view(),
        name="api-client-customer-invoices",
    ),
    path(
        "v1/client/billing/invoices/<str:reference_id>/<str:invoice_id>",
        api.CustomerInvoiceDetail.as_view(),
        name="api-client-customer-invoice",
    ),
]
