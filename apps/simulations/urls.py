"""API routes of apps.simulations, included under /api/."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("simulations", api.SimulationListCreate.as_view(), name="api-simulations"),
    # Before the id route: "preview" is not an id.
    path("simulations/preview", api.SimulationPreview.as_view(), name="api-simulation-preview"),
    path("simulations/<str:simulation_id>", api.SimulationDetail.as_view(), name="api-simulation"),
    path(
        "simulations/<str:simulation_id>/cancel",
        api.SimulationCancel.as_view(),
        name="api-simulation-cancel",
    ),
    path(
        "simulations/<str:simulation_id>/customers.csv",
        api.SimulationCustomersCSV.as_view(),
        name="api-simulation-customers-csv",
    ),
]
