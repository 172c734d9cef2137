"""API routes of apps.credits, included under /api/.

The customer's pool routes come first: a customer whose reference is "models"
or "weights" still reaches its pools at ``credits/models/pools``. References in
paths use ``<str:>``, so they cannot contain "/" (as in apps/customers/api.py).
"""

from __future__ import annotations

from django.urls import path

from . import api

P = "v1/client/credits"

urlpatterns = [
    path(f"{P}/<str:reference_id>/pools", api.PoolList.as_view(), name="api-credit-pools"),
    path(
        f"{P}/<str:reference_id>/pools/<str:pool_id>",
        api.PoolDetail.as_view(),
        name="api-credit-pool",
    ),
    path(
        f"{P}/<str:reference_id>/pools/<str:pool_id>/grants",
        api.PoolGrants.as_view(),
        name="api-credit-pool-grants",
    ),
    path(
        f"{P}/<str:reference_id>/pools/<str:pool_id>/transactions",
        api.PoolTransactions.as_view(),
        name="api-credit-pool-transactions",
    ),
    path(f"{P}/models", api.CreditModelListCreate.as_view(), name="api-credit-models"),
    path(f"{P}/models/<str:model_id>", api.CreditModelDetail.as_view(), name="api-credit-model"),
    path(f"{P}/allocations", api.AllocationListCreate.as_view(), name="api-credit-allocations"),
    path(
        f"{P}/allocations/<str:allocation_id>",
        api.AllocationDetail.as_view(),
        name="api-credit-allocation",
    ),
    path(f"{P}/grants", api.GrantCreate.as_view(), name="api-credit-grants"),
    path(f"{P}/deductions", api.DeductionCreate.as_view(), name="api-credit-deductions"),
    path(
        f"{P}/transactions/<str:transaction_id>/reverse",
        api.TransactionReverse.as_view(),
        name="api-credit-transaction-reverse",
    ),
    path(f"{P}/weights", api.WeightList.as_view(), name="api-credit-weights"),
    path(f"{P}/weights/publish", api.WeightPublish.as_view(), name="api-credit-weights-publish"),
    path(f"{P}/weights/<str:weight_id>", api.WeightDetail.as_view(), name="api-credit-weight"),
    path(f"{P}/prices", api.PriceList.as_view(), name="api-credit-prices"),
    path(f"{P}/prices/publish", api.PricePublish.as_view(), name="api-credit-prices-publish"),
    path(
        "v1/client/customers/<str:reference_id>/usage",
        api.CustomerUsage.as_view(),
        name="api-client-customer-usage",
    ),
]
