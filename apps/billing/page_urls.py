"""Page routes of apps.billing (included at /invoices/ by tanso/urls.py)."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("<uuid:invoice_id>", views.invoice_page, name="billing-invoice-page"),
]
