"""``credits/models`` and ``credits/allocations``: denominations and what plans grant."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.audit import Actor
from apps.apikeys import scopes as S
from apps.apikeys.authentication import environment_of
from apps.apikeys.idempotency import APIView
from apps.core.api.fields import MetadataField, StrictCharField
from apps.core.api.pagination import paginate_newest_first
from apps.core.api.schema import PAGE_PARAMETERS, page
from apps.core.errors import NotFound, ValidationFailed
from apps.credits import rendering as R
from apps.credits import selectors as sel
from apps.credits import services as svc
from apps.credits.models import RolloverPolicy

from .inputs import LooseChoiceField, credits_field, denomination_field
from .schema import ALLOCATION_OUT, CREDIT_MODEL_OUT, MODEL_PARAM, _path


class CreditModelInput(serializers.Serializer):
    name = StrictCharField(max_length=150)
    denomination = denomination_field()
    description = StrictCharField(required=False, allow_blank=True, max_length=2000)
    hardLimit = serializers.BooleanField(required=False, default=True)
    rolloverPolicy = LooseChoiceField(
        RolloverPolicy.values, required=False, default=RolloverPolicy.NONE
    )
    rolloverCap = credits_field(required=False, allow_null=True, min_value=Decimal(0))
    grantExpiresMonths = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=1200
    )
    metadata = MetadataField(required=False)


class CreditModelListCreate(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ, "POST": S.BILLING_WRITE}

    @extend_schema(
        summary="List credit models (denominations)",
        operation_id="credit_models_list",
        request=None,
        parameters=PAGE_PARAMETERS,
        responses={200: page("CreditsModelPage", CREDIT_MODEL_OUT)},
    )
    def get(self, request: Request) -> Response:
        models_ = sel.credit_models_for(environment_of(request))
        return Response(paginate_newest_first(models_, request, R.render_credit_model))

    @extend_schema(
        summary="Define a credit model (409 denomination_exists)",
        request=CreditModelInput,
        responses={201: CREDIT_MODEL_OUT},
    )
    def post(self, request: Request) -> Response:
        body = CreditModelInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        model = svc.credit_model_create(
            environment=environment_of(request),
            name=data["name"],
            denomination=data["denomination"],
            description=data.get("description") or "",
            hard_limit=data["hardLimit"],
            rollover_policy=data["rolloverPolicy"],
            rollover_cap=data.get("rolloverCap"),
            grant_expiry_months=data.get("grantExpiresMonths"),
            metadata=data.get("metadata"),
            actor=Actor.from_request(request),
        )
        return Response(R.render_credit_model(model), status=status.HTTP_201_CREATED)


class CreditModelDetail(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ, "DELETE": S.BILLING_WRITE}

    @extend_schema(
        summary="One credit model",
        request=None,
        parameters=[MODEL_PARAM],
        responses={200: CREDIT_MODEL_OUT},
    )
    def get(self, request: Request, model_id: str) -> Response:
        return Response(
            R.render_credit_model(sel.credit_model_get(environment_of(request), model_id))
        )

    @extend_schema(
        summary="Archive a credit model (existing pools keep working)",
        request=None,
        parameters=[MODEL_PARAM],
        responses={200: CREDIT_MODEL_OUT},
    )
    def delete(self, request: Request, model_id: str) -> Response:
        model = sel.credit_model_get(environment_of(request), model_id)
        model = svc.credit_model_archive(credit_model=model, actor=Actor.from_request(request))
        return Response(R.render_credit_model(model))


class AllocationInput(serializers.Serializer):
    planKey = StrictCharField(max_length=128)
    creditModelId = serializers.UUIDField(required=False)
    denomination = denomination_field(required=False)
    creditAmount = credits_field(min_value=Decimal("0.000001"))
    grantExpiresMonths = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=1200
    )
    priority = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=1_000_000
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "creditModelId" not in attrs and "denomination" not in attrs:
            raise serializers.ValidationError(
                {"creditModelId": ["Give creditModelId or denomination."]}
            )
        return attrs


class AllocationListCreate(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ, "POST": S.BILLING_WRITE}

    @extend_schema(
        summary="Plan credit allocations (?planKey=)",
        request=None,
        parameters=[
            OpenApiParameter("planKey", str, description="Only this plan's allocations."),
            *PAGE_PARAMETERS,
        ],
        responses={200: page("CreditsAllocationPage", ALLOCATION_OUT)},
    )
    def get(self, request: Request) -> Response:
        plan_key = request.query_params.get("planKey")
        allocations = sel.allocations_for(environment_of(request), plan_key)
        return Response(paginate_newest_first(allocations, request, R.render_allocation))

    @extend_schema(
        summary="Set the credits a plan grants each period in one denomination",
        request=AllocationInput,
        responses={201: ALLOCATION_OUT},
    )
    def post(self, request: Request) -> Response:
        body = AllocationInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        environment = environment_of(request)
        try:
            if "creditModelId" in data:
                model = sel.credit_model_get(environment, data["creditModelId"])
            else:
                model = sel.credit_model_by_denomination(environment, data["denomination"])
        except NotFound:
            raise ValidationFailed(fields={"creditModelId": ["No such credit model."]}) from None
        allocation = svc.plan_allocation_set(
            environment=environment,
            plan_key=data["planKey"],
            credit_model=model,
            credit_amount=data["creditAmount"],
            grant_expiry_months=data.get("grantExpiresMonths"),
            priority=data.get("priority"),
            actor=Actor.from_request(request),
        )
        return Response(R.render_allocation(allocation), status=status.HTTP_201_CREATED)


class AllocationDetail(APIView):
    required_scopes = {"DELETE": S.BILLING_WRITE}

    @extend_schema(
        summary="Remove a plan credit allocation",
        request=None,
        parameters=[_path("allocation_id", "The allocation's id.")],
        responses={204: None},
    )
    def delete(self, request: Request, allocation_id: str) -> Response:
        allocation = sel.allocation_get(environment_of(request), allocation_id)
        svc.plan_allocation_remove(allocation=allocation, actor=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
