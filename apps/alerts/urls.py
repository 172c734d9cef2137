"""API routes of apps.alerts, included under /api/."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("alerts", api.AlertList.as_view(), name="api-alerts"),
    path("alerts/<str:alert_id>", api.AlertDetail.as_view(), name="api-alert"),
    path("fired-alerts", api.FiredAlertList.as_view(), name="api-fired-alerts"),
    path(
        "fired-alerts/<str:notification_id>/acknowledge",
        api.FiredAlertAcknowledge.as_view(),
        name="api-fired-alert-acknowledge",
    ),
    path("alert-webhooks", api.EndpointList.as_view(), name="api-alert-webhooks"),
    path(
        "alert-webhooks/<str:endpoint_id>", api.EndpointDetail.as_view(), name="api-alert-webhook"
    ),
    path(
        "alert-webhooks/<str:endpoint_id>/rotate",
        api.EndpointRotate.as_view(),
        name="api-alert-webhook-rotate",
    ),
    path(
        "alert-webhooks/<str:endpoint_id>/test",
        api.EndpointTest.as_view(),
        name="api-alert-webhook-test",
    ),
    path(
        "alert-webhooks/<str:endpoint_id>/deliveries",
        api.EndpointDeliveries.as_view(),
        name="api-alert-webhook-deliveries",
    ),
    path(
        "alert-deliveries/<str:delivery_id>/replay",
        api.DeliveryReplay.as_view(),
        name="api-alert-delivery-replay",
    ),
]
