"""Dashboard routes of the Stripe import panel, under /dashboard/stripe/import/."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "stripe_import"

urlpatterns = [
    path("", views.import_page, name="page"),
    path("panel/", views.import_panel, name="panel"),
    path("start/", views.import_start, name="start"),
]
