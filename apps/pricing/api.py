"""API: the model price catalog (read) and the environment's negotiated rates."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.audit import Actor
from apps.apikeys import scopes as S
from apps.apikeys.authentication import request_key
from apps.apikeys.idempotency import APIView
from apps.core.api.pagination import paginate_newest_first
from apps.core.api.query import query_bool
from apps.core.api.schema import PAGE_PARAMETERS, decimal, page
from apps.core.errors import InvalidQuery

from .models import ModelPriceOverride, PriceVersion
from .selectors import (
    PRICE_FIELD_NAMES,
    catalog_model_pk,
    override_get,
    overrides_for,
    price_versions,
)
from .services import API_FIELD, override_create, override_delete, override_update


def render_version(version: PriceVersion) -> dict[str, Any]:
    model = version.model
    return {
        "id": version.pk,
        "provider": model.provider.provider_id,
        "providerName": model.provider.name,
        "model": model.model_id,
        "modelName": model.name,
        "contextWindow": model.context_window,
        "deprecated": model.deprecated,
        "effectiveFrom": version.effective_from,
        "effectiveTo": version.effective_to,
        **{name: getattr(version, key) for key, name in PRICE_FIELD_NAMES.items()},
        "hasTiers": version.has_tiers,
        "isConditional": version.is_conditional,
        # The full structure as the source gives it (decimal strings), tiers and conditions too.
        "prices": version.prices,
        "contentHash": version.content_hash,
    }


# -- OpenAPI shapes of the answers (decimal strings for amounts) ----------------------------


_VERSION = inline_serializer(
    "PricingModelPrice",
    fields={
        "id": serializers.IntegerField(),
        "provider": serializers.CharField(),
        "providerName": serializers.CharField(),
        "model": serializers.CharField(),
        "modelName": serializers.CharField(),
        "contextWindow": serializers.IntegerField(allow_null=True),
        "deprecated": serializers.BooleanField(),
        "effectiveFrom": serializers.DateTimeField(),
        "effectiveTo": serializers.DateTimeField(allow_null=True, help_text="null: in force"),
        **{name: decimal(help_text="USD", allow_null=True) for name in PRICE_FIELD_NAMES.values()},
        "hasTiers": serializers.BooleanField(),
        "isConditional": serializers.BooleanField(),
        "prices": serializers.JSONField(
            help_text="the full price structure as the source gives it (decimal strings), "
            "tiers and conditions too"
        ),
        "contentHash": serializers.CharField(),
    },
)
_VERSION_LIST = page("PricingModelPriceList", _VERSION)


class ModelPriceList(APIView):
    required_scopes = S.MODELS_READ

    @extend_schema(
        summary="Catalog prices in force (?provider=&model=; ?history=1 for every version)",
        request=None,
        parameters=[
            OpenApiParameter("provider", str, description="provider id, e.g. openai"),
            OpenApiParameter("model", str, description="model id, e.g. gpt-4o"),
            OpenApiParameter("history", bool, description="every version (needs model)"),
            *PAGE_PARAMETERS,
        ],
        responses={200: _VERSION_LIST},
    )
    def get(self, request: Request) -> Response:
        provider = request.query_params.get("provider") or None
        model = request.query_params.get("model") or None
        history = bool(query_bool(request.query_params, "history"))
        if history and not model:
            raise InvalidQuery(fields={"model": ["Required with history=1."]})
        model_pk = None
        if model:
            model_pk = catalog_model_pk(provider, model)
            if model_pk is None:
                return Response({"items": [], "nextCursor": None, "hasMore": False})
        versions = price_versions(provider=provider, model_pk=model_pk, history=history)
        return Response(
            paginate_newest_first(versions, request, render_version, time_field="effective_from")
        )


def render_override(override: ModelPriceOverride) -> dict[str, Any]:
    return {
        "id": override.pk,
        "kind": override.kind,
        "provider": override.provider or None,
        "model": override.model or None,
        "inputCostPerMillion": override.input_mtok,
        "outputCostPerMillion": override.output_mtok,
        "cacheReadCostPerMillion": override.cache_read_mtok,
        "cacheWriteCostPerMillion": override.cache_write_mtok,
        "costPerRequest": override.per_request_usd,
        "discountPercent": override.discount_percent,
        "note": override.note,
        "createdAt": override.created_at,
        "updatedAt": override.updated_at,
    }


def _amount(**kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=24,
        decimal_places=12,
        min_value=Decimal(0),
        required=False,
        allow_null=True,
        **kwargs,
    )


class OverrideInput(serializers.Serializer):
    provider = serializers.CharField(max_length=64, required=False, allow_blank=True)
    model = serializers.CharField(max_length=200, required=False, allow_blank=True)
    inputCostPerMillion = _amount()
    outputCostPerMillion = _amount()
    cacheReadCostPerMillion = _amount()
    cacheWriteCostPerMillion = _amount()
    costPerRequest = _amount()
    discountPercent = serializers.DecimalField(
        max_digits=7,
        decimal_places=4,
        min_value=Decimal(0),
        max_value=Decimal(100),
        required=False,
        allow_null=True,
    )
    note = serializers.CharField(max_length=500, required=False, allow_blank=True)


_FROM_API = {api: name for name, api in API_FIELD.items()}


def _changes(data: dict[str, Any]) -> dict[str, Any]:
    return {_FROM_API[key]: value for key, value in data.items()}


_OVERRIDE_SCOPES = {
    "GET": S.MODELS_READ,
    "POST": S.USAGE_WRITE,
    "PATCH": S.USAGE_WRITE,
    "DELETE": S.USAGE_WRITE,
}


_OVERRIDE = inline_serializer(
    "PricingModelPriceOverride",
    fields={
        "id": serializers.UUIDField(),
        "kind": serializers.CharField(
            help_text="rates (custom rates for one model) or discount (a model or provider)"
        ),
        "provider": serializers.CharField(allow_null=True),
        "model": serializers.CharField(allow_null=True),
        "inputCostPerMillion": decimal(help_text="USD per million tokens", allow_null=True),
        "outputCostPerMillion": decimal(help_text="USD per million tokens", allow_null=True),
        "cacheReadCostPerMillion": decimal(help_text="USD per million tokens", allow_null=True),
        "cacheWriteCostPerMillion": decimal(help_text="USD per million tokens", allow_null=True),
        "costPerRequest": decimal(help_text="USD", allow_null=True),
        "discountPercent": decimal(allow_null=True),
        "note": serializers.CharField(),
        "createdAt": serializers.DateTimeField(),
        "updatedAt": serializers.DateTimeField(),
    },
)
_OVERRIDE_LIST = page("PricingModelPriceOverrideList", _OVERRIDE)


class ModelPriceOverrideListCreate(APIView):
    required_scopes = _OVERRIDE_SCOPES

    @extend_schema(
        summary="List the environment's negotiated model rates",
        operation_id="model_price_overrides_list",
        request=None,
        parameters=PAGE_PARAMETERS,
        responses={200: _OVERRIDE_LIST},
    )
    def get(self, request: Request) -> Response:
        overrides = overrides_for(request_key(request).environment)
        return Response(paginate_newest_first(overrides, request, render_override))

    @extend_schema(
        summary="Add custom rates for a model, or a discount for a model or provider",
        request=OverrideInput,
        responses={201: _OVERRIDE},
    )
    def post(self, request: Request) -> Response:
        body = OverrideInput(data=request.data)
        body.is_valid(raise_exception=True)
        override = override_create(
            environment=request_key(request).environment,
            actor=Actor.from_request(request),
            **_changes(body.validated_data),
        )
        return Response(render_override(override), status=status.HTTP_201_CREATED)


class ModelPriceOverrideDetail(APIView):
    required_scopes = _OVERRIDE_SCOPES

    @extend_schema(summary="Get one negotiated rate", request=None, responses={200: _OVERRIDE})
    def get(self, request: Request, override_id: str) -> Response:
        return Response(
            render_override(override_get(request_key(request).environment, override_id))
        )

    @extend_schema(
        summary="Change a negotiated rate (null clears a field)",
        request=OverrideInput,
        responses={200: _OVERRIDE},
    )
    def patch(self, request: Request, override_id: str) -> Response:
        override = override_get(request_key(request).environment, override_id)
        body = OverrideInput(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        override = override_update(
            override=override,
            changes=_changes(body.validated_data),
            actor=Actor.from_request(request),
        )
        return Response(render_override(override))

    @extend_schema(summary="Remove a negotiated rate", request=None, responses={204: None})
    def delete(self, request: Request, override_id: str) -> Response:
        override = override_get(request_key(request).environment, override_id)
        override_delete(override=override, actor=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
