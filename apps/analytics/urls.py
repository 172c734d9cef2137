"""Observe read API routes, included under /api/.

References and trace ids in paths use ``<str:>``, so they cannot contain "/"
(as in apps/customers/api.py); such a customer is still in ``GET /api/customers``
(``?search=``), such a trace in ``GET /api/events?traceId=``.
"""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("analytics/overview", api.Overview.as_view(), name="api-analytics-overview"),
    path("analytics/settings", api.MarginSettingsView.as_view(), name="api-analytics-settings"),
    path("customers", api.CustomerList.as_view(), name="api-customers"),
    path("customers/<str:reference_id>", api.CustomerDetail.as_view(), name="api-customer"),
    path("features", api.FeatureList.as_view(), name="api-features"),
    path("models", api.ModelList.as_view(), name="api-models"),
    path("events", api.EventList.as_view(), name="api-events"),
    path("traces/<str:trace_id>", api.TraceDetail.as_view(), name="api-trace"),
]
