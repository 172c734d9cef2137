"""``customers/{ref}/usage``: the customer's credit burndown (``usage.read``)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.apikeys import scopes as S
from apps.apikeys.authentication import environment_of
from apps.apikeys.idempotency import APIView
from apps.apikeys.permissions import ensure_customer_access
from apps.core.api.schema import many
from apps.credits import rendering as R
from apps.credits import selectors as sel
from apps.customers.selectors import customer_get

from .inputs import _now
from .schema import POOL_USAGE_OUT, REFERENCE_PARAM


class CustomerUsage(APIView):
    """The usage report: per subscription in force, each feature's used / limit /
    remaining / projected end of period (``apps.entitlements``), and the credit pools."""

    required_scopes = {"GET": S.USAGE_READ, "HEAD": S.USAGE_READ}
    customer_key_scope = S.CUSTOMER_READ

    @extend_schema(
        summary="A customer's usage report: features per subscription, credit burndown per pool",
        request=None,
        parameters=[REFERENCE_PARAM],
        responses={
            200: inline_serializer(
                "CreditsCustomerUsage",
                fields={
                    "customerReferenceId": serializers.CharField(),
                    "asOf": serializers.DateTimeField(),
                    "subscriptions": serializers.ListField(
                        child=serializers.DictField(),
                        help_text=(
                            "Per subscription in force: {subscriptionId, planKey, status, "
                            "currentPeriodStart, currentPeriodEnd, features: [{featureKey, "
                            "allowed, reason?, used, limit, remaining, held, unlimited, "
                            "windowStart, resetsAt, projectedEndOfPeriod, wouldExceedLimit}]} "
                            "(docs/entitlements.md)."
                        ),
                    ),
                    "creditPools": many(POOL_USAGE_OUT),
                },
            )
        },
    )
    def get(self, request: Request, reference_id: str) -> Response:
        ensure_customer_access(request, reference_id)
        environment = environment_of(request)
        customer = customer_get(environment, reference_id)
        now = _now()
        usage = sel.customer_credit_usage(environment, customer, now=now)
        from apps.entitlements.rendering import render_usage_report
        from apps.entitlements.selectors import feature_usage

        features = feature_usage(environment, customer.reference_id, now=now)
        return Response(
            {
                "customerReferenceId": customer.reference_id,
                "asOf": now,
                "subscriptions": render_usage_report(features, now),
                "creditPools": [R.render_pool_usage(row) for row in usage],
            }
        )
