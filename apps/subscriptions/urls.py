"""API routes of apps.subscriptions, included under /api/ (the reference API's paths)."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path(
        "v1/client/subscriptions",
        api.SubscriptionListCreate.as_view(),
        name="api-client-subscriptions",
    ),
    path(
        "v1/client/subscriptions/cancellation/<str:subscription_id>",
        api.SubscriptionCancellation.as_view(),
        name="api-client-subscription-cancellation",
    ),
    path(
        "v1/client/subscriptions/cancellation/<str:subscription_id>/scheduled",
        api.SubscriptionScheduledCancellation.as_view(),
        name="api-client-subscription-cancellation-scheduled",
    ),
    path(
        "v1/client/subscriptions/<str:subscription_id>",
        api.SubscriptionDetail.as_view(),
        name="api-client-subscription",
    ),
    path(
        "v1/client/subscriptions/<str:subscription_id>/changes",
        api.SubscriptionChanges.as_view(),
        name="api-client-subscription-changes",
    ),
    path(
        "v1/client/subscriptions/<str:subscription_id>/plan-change",
        api.SubscriptionPlanChange.as_view(),
        name="api-client-subscription-plan-change",
    ),
    path(
        "v1/client/subscriptions/<str:subscription_id>/plan-change/scheduled",
        api.SubscriptionScheduledChange.as_view(),
        name="api-client-subscription-plan-change-scheduled",
    ),
    path(
        "v1/client/customers/<str:reference_id>/subscriptions",
        api.CustomerSubscriptions.as_view(),
        name="api-client-customer-subscriptions",
    ),
]
