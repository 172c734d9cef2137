"""API routes of apps.events (ingestion), included under /api/."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("v1/client/events", api.ClientEventCreate.as_view(), name="api-client-events"),
    path("events/ingest", api.EventsIngest.as_view(), name="api-events-ingest"),
    path("events/recost", api.EventsRecost.as_view(), name="api-events-recost"),
    path("events/recost-runs", api.RecostRunList.as_view(), name="api-events-recost-runs"),
]
