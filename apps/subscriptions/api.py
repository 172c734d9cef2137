"""Client API for subscriptions: ``/api/v1/client/subscriptions`` (reference API paths).

Reads need ``customers.read`` (a ``ck_`` key with ``read`` may read its own
customer's); writes need ``customers.write``. A subscription is addressed by
its id.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.audit import Actor
from apps.apikeys import scopes as S
from apps.apikeys.authentication import environment_of
from apps.apikeys.idempotency import APIView
from apps.apikeys.permissions import ensure_customer_access, pinned_customer_reference
from apps.core.api.fields import MetadataField, StrictCharField
from apps.core.api.pagination import decode_cursor, page_limit, paginate_newest_first
from apps.core.api.schema import PAGE_PARAMETERS, documented, page
from apps.core.errors import InvalidQuery, NotFound, ValidationFailed
from apps.customers.selectors import customer_get
from apps.customers.services import REFERENCE_MAX_LENGTH
from apps.plans.models import Plan
from apps.plans.selectors import plan_get

from .models import Subscription, SubscriptionChange
from .rendering import render_change, render_subscription
from .selectors import subscription_changes, subscription_get, subscriptions_search
from .services import (
    MAX_GRACE_DAYS,
    MAX_TRIAL_DAYS,
    subscription_cancel,
    subscription_cancel_revert,
    subscription_change_cancel,
    subscription_change_plan,
    subscription_create,
)

STATUS_FILTERS = (*Subscription.Status.values, "live")


class StrictIntegerField(serializers.IntegerField):
    """A JSON whole number only (no strings, no booleans)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int | Decimal):
            self.fail("invalid")
        return super().to_internal_value(str(data))


def _plan_reference(data: dict[str, Any], *names: str) -> str:
    given = {name: data[name] for name in names if data.get(name)}
    if not given:
        raise ValidationFailed(fields={names[0]: ["Required (a plan id or key)."]})
    values = set(given.values())
    if len(values) > 1:
        raise ValidationFailed(fields={names[0]: [f"Give one of {', '.join(names)}."]})
    return values.pop()


def _with_details(request: Request, subscription: Subscription) -> dict[str, Any]:
    return render_subscription(subscription_get(environment_of(request), str(subscription.pk)))


class _ReadingView(APIView):
    """GETs are open to a ``ck_`` key with ``read``, pinned to its own customer."""

    customer_key_scope = {"GET": S.CUSTOMER_READ, "HEAD": S.CUSTOMER_READ}


def _subscription(request: Request, subscription_id: str) -> Subscription:
    subscription = subscription_get(environment_of(request), subscription_id)
    pinned = pinned_customer_reference(request)
    if pinned is not None and subscription.customer.reference_id != pinned:
        raise NotFound("No such subscription.")
    return subscription


# -- input --------------------------------------------------------------------------------


class SubscriptionCreateInput(serializers.Serializer):
    customerReferenceId = StrictCharField(max_length=REFERENCE_MAX_LENGTH, trim_whitespace=False)
    planId = StrictCharField(max_length=128, required=False)
    planKey = StrictCharField(max_length=128, required=False)
    trialDays = StrictIntegerField(min_value=0, max_value=MAX_TRIAL_DAYS, required=False)
    gracePeriod = StrictIntegerField(min_value=0, max_value=MAX_GRACE_DAYS, required=False)
    metadata = MetadataField(required=False)


class PlanChangeInput(serializers.Serializer):
    changeToPlanId = StrictCharField(max_length=128, required=False)
    planId = StrictCharField(max_length=128, required=False)
    planKey = StrictCharField(max_length=128, required=False)
    changeType = documented(
        StrictCharField(required=False),
        {"type": "string", "enum": ["UPGRADE", "DOWNGRADE"], "description": "any case"},
    )
    timing = documented(
        StrictCharField(required=False),
        {"type": "string", "enum": SubscriptionChange.Timing.values, "description": "any case"},
    )

    def validate_changeType(self, value: str) -> str:  # DRF's naming
        if value.lower() not in SubscriptionChange.Type.values:
            raise serializers.ValidationError("UPGRADE or DOWNGRADE.")
        return value.lower()

    def validate_timing(self, value: str) -> str:
        if value.lower() not in SubscriptionChange.Timing.values:
            raise serializers.ValidationError("now or period_end.")
        return value.lower()


# -- schema (what the views return; see rendering.py) -------------------------------------


_CHANGE = inline_serializer(
    "SubscriptionsPlanChange",
    fields={
        "id": serializers.UUIDField(),
        "changeType": serializers.ChoiceField(
            choices=[t.upper() for t in SubscriptionChange.Type.values]
        ),
        "timing": serializers.ChoiceField(choices=SubscriptionChange.Timing.values),
        "status": serializers.ChoiceField(
            choices=[s.upper() for s in SubscriptionChange.Status.values]
        ),
        "fromPlanId": serializers.UUIDField(),
        "fromPlanKey": serializers.CharField(),
        "toPlanId": serializers.UUIDField(),
        "toPlanKey": serializers.CharField(),
        "periodStart": serializers.DateTimeField(help_text="The period the change happened in"),
        "periodEnd": serializers.DateTimeField(),
        "effectiveAt": serializers.DateTimeField(),
        "requestedAt": serializers.DateTimeField(),
        "fulfilledAt": serializers.DateTimeField(allow_null=True),
        "cancelledAt": serializers.DateTimeField(allow_null=True),
    },
)
_SUBSCRIPTION = inline_serializer(
    "SubscriptionsSubscription",
    fields={
        "id": serializers.UUIDField(),
        "customerId": serializers.UUIDField(),
        "customerReferenceId": serializers.CharField(),
        "planId": serializers.UUIDField(),
        "planKey": serializers.CharField(),
        "planName": serializers.CharField(),
        "status": serializers.ChoiceField(choices=Subscription.Status.values),
        "isActive": serializers.BooleanField(help_text="Trialing or active"),
        "startedAt": serializers.DateTimeField(),
        "trialEndsAt": serializers.DateTimeField(allow_null=True),
        "currentPeriodStart": serializers.DateTimeField(),
        "currentPeriodEnd": serializers.DateTimeField(),
        "billingAnchorDay": serializers.IntegerField(),
        "intervalMonths": serializers.IntegerField(help_text="1 or 12"),
        "gracePeriodDays": serializers.IntegerField(),
        "cancelMode": serializers.CharField(
            allow_null=True, help_text="END_OF_PERIOD or IMMEDIATE; null: not cancelled"
        ),
        "cancelAtPeriodEnd": serializers.BooleanField(),
        "cancelEffectiveAt": serializers.DateTimeField(allow_null=True),
        "cancelledAt": serializers.DateTimeField(allow_null=True),
        "endedAt": serializers.DateTimeField(allow_null=True),
        "scheduledChange": type(_CHANGE)(
            allow_null=True, help_text="The pending plan change, if any"
        ),
        "metadata": serializers.DictField(),
        "createdAt": serializers.DateTimeField(),
        "modifiedAt": serializers.DateTimeField(),
    },
)


_SUBSCRIPTION_ID = OpenApiParameter("subscription_id", str, OpenApiParameter.PATH)


# -- views --------------------------------------------------------------------------------


class SubscriptionListCreate(_ReadingView):
    required_scopes = {
        "GET": S.CUSTOMERS_READ,
        "HEAD": S.CUSTOMERS_READ,
        "POST": S.CUSTOMERS_WRITE,
    }

    @extend_schema(
        summary="List subscriptions, newest first",
        operation_id="subscriptions_list",
        request=None,
        responses={200: page("SubscriptionsSubscriptionPage", _SUBSCRIPTION)},
        parameters=[
            OpenApiParameter("customerReferenceId", str),
            OpenApiParameter("status", str, enum=list(STATUS_FILTERS)),
            OpenApiParameter("planId", str, description="A plan id or key"),
            *PAGE_PARAMETERS,
        ],
    )
    def get(self, request: Request) -> Response:
        environment = environment_of(request)
        params = request.query_params
        # Every parameter is checked before any answer, the empty ones below included.
        page_limit(request)
        if params.get("cursor"):
            decode_cursor(params["cursor"])
        status_filter = params.get("status")
        if status_filter and status_filter.lower() not in STATUS_FILTERS:
            raise InvalidQuery(fields={"status": [f"One of {', '.join(STATUS_FILTERS)}."]})
        reference = params.get("customerReferenceId") or pinned_customer_reference(request)
        customer = None
        if reference is not None:
            ensure_customer_access(request, reference)
            try:
                customer = customer_get(environment, reference)
            except NotFound:
                return Response({"items": [], "nextCursor": None, "hasMore": False})
        plan_id = None
        if params.get("planId"):
            try:
                plan_id = plan_get(environment, params["planId"]).pk
            except NotFound:
                return Response({"items": [], "nextCursor": None, "hasMore": False})
        subscriptions = subscriptions_search(
            environment,
            customer=customer,
            status=status_filter.lower() if status_filter else None,
            plan_id=plan_id,
        )
        return Response(paginate_newest_first(subscriptions, request, render_subscription))

    @extend_schema(
        summary="Subscribe a customer to an active plan",
        request=SubscriptionCreateInput,
        responses={201: _SUBSCRIPTION},
    )
    def post(self, request: Request) -> Response:
        body = SubscriptionCreateInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        environment = environment_of(request)
        plan_ref = _plan_reference(data, "planId", "planKey")
        customer = customer_get(environment, data["customerReferenceId"])
        plan: Plan = plan_get(environment, plan_ref)
        subscription = subscription_create(
            environment=environment,
            customer=customer,
            plan=plan,
            trial_days=data.get("trialDays", 0),
            grace_period_days=data.get("gracePeriod", 3),
            metadata=data.get("metadata"),
            actor=Actor.from_request(request),
        )
        return Response(_with_details(request, subscription), status=status.HTTP_201_CREATED)


class CustomerSubscriptions(_ReadingView):
    required_scopes = {"GET": S.CUSTOMERS_READ, "HEAD": S.CUSTOMERS_READ}

    @extend_schema(
        summary="A customer's subscriptions, newest first",
        request=None,
        responses={200: page("SubscriptionsCustomerSubscriptionPage", _SUBSCRIPTION)},
        parameters=[OpenApiParameter("reference_id", str, OpenApiParameter.PATH), *PAGE_PARAMETERS],
    )
    def get(self, request: Request, reference_id: str) -> Response:
        ensure_customer_access(request, reference_id)
        environment = environment_of(request)
        customer = customer_get(environment, reference_id)
        subscriptions = subscriptions_search(environment, customer=customer)
        return Response(paginate_newest_first(subscriptions, request, render_subscription))


class SubscriptionDetail(_ReadingView):
    required_scopes = {"GET": S.CUSTOMERS_READ, "HEAD": S.CUSTOMERS_READ}

    @extend_schema(
        summary="Get one subscription",
        request=None,
        responses={200: _SUBSCRIPTION},
        parameters=[_SUBSCRIPTION_ID],
    )
    def get(self, request: Request, subscription_id: str) -> Response:
        return Response(render_subscription(_subscription(request, subscription_id)))


class SubscriptionChanges(_ReadingView):
    required_scopes = {"GET": S.CUSTOMERS_READ, "HEAD": S.CUSTOMERS_READ}

    @extend_schema(
        summary="The subscription's plan changes, newest first (at most 200, one page)",
        request=None,
        responses={200: page("SubscriptionsPlanChangePage", _CHANGE)},
        parameters=[_SUBSCRIPTION_ID],
    )
    def get(self, request: Request, subscription_id: str) -> Response:
        subscription = _subscription(request, subscription_id)
        changes = [render_change(change) for change in subscription_changes(subscription)[:200]]
        return Response({"items": changes, "nextCursor": None, "hasMore": False})


class SubscriptionPlanChange(APIView):
    required_scopes = S.CUSTOMERS_WRITE

    @extend_schema(
        summary="Change plan: upgrades now, downgrades at the period end (or say `timing`)",
        request=PlanChangeInput,
        responses={200: _SUBSCRIPTION},
        parameters=[_SUBSCRIPTION_ID],
    )
    def post(self, request: Request, subscription_id: str) -> Response:
        subscription = _subscription(request, subscription_id)
        body = PlanChangeInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        plan = plan_get(
            environment_of(request), _plan_reference(data, "changeToPlanId", "planId", "planKey")
        )
        subscription_change_plan(
            subscription=subscription,
            plan=plan,
            timing=data.get("timing"),
            change_type=data.get("changeType"),
            actor=Actor.from_request(request),
        )
        return Response(_with_details(request, subscription))


class SubscriptionScheduledChange(APIView):
    required_scopes = S.CUSTOMERS_WRITE

    @extend_schema(
        summary="Cancel the scheduled plan change",
        request=None,
        responses={200: _SUBSCRIPTION},
        parameters=[_SUBSCRIPTION_ID],
    )
    def delete(self, request: Request, subscription_id: str) -> Response:
        subscription = _subscription(request, subscription_id)
        subscription_change_cancel(subscription=subscription, actor=Actor.from_request(request))
        return Response(_with_details(request, subscription))


class SubscriptionCancellation(APIView):
    required_scopes = S.CUSTOMERS_WRITE

    @extend_schema(
        summary="Cancel at the period end (default) or immediately",
        description="`cancelMode` may be given in the query or in the body (the query wins).",
        request=inline_serializer(
            "SubscriptionsCancel",
            fields={
                "cancelMode": serializers.CharField(
                    required=False, help_text="END_OF_PERIOD (default) or IMMEDIATE"
                )
            },
        ),
        responses={200: _SUBSCRIPTION},
        parameters=[
            _SUBSCRIPTION_ID,
            OpenApiParameter("cancelMode", str, enum=["END_OF_PERIOD", "IMMEDIATE"]),
        ],
    )
    def post(self, request: Request, subscription_id: str) -> Response:
        subscription = _subscription(request, subscription_id)
        mode = request.query_params.get("cancelMode")
        if mode is None and isinstance(request.data, dict):
            mode = request.data.get("cancelMode")
        if mode is not None and not isinstance(mode, str):
            raise ValidationFailed(fields={"cancelMode": ["END_OF_PERIOD or IMMEDIATE."]})
        subscription_cancel(
            subscription=subscription,
            mode=(mode or Subscription.CancelMode.END_OF_PERIOD).lower(),
            actor=Actor.from_request(request),
        )
        return Response(_with_details(request, subscription))


class SubscriptionScheduledCancellation(APIView):
    required_scopes = S.CUSTOMERS_WRITE

    @extend_schema(
        summary="Revert a scheduled cancellation",
        request=None,
        responses={200: _SUBSCRIPTION},
        parameters=[_SUBSCRIPTION_ID],
    )
    def delete(self, request: Request, subscription_id: str) -> Response:
        subscription = _subscription(request, subscription_id)
        subscription_cancel_revert(subscription=subscription, actor=Actor.from_request(request))
        return Response(_with_details(request, subscription))
