"""``credits/weights`` and ``credits/prices``: the two dials, published for a future instant."""

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
from apps.core.api.fields import StrictCharField
from apps.core.api.query import query_bool
from apps.core.api.schema import OPTIONAL_INSTANT_SCHEMA, many, page
from apps.core.errors import InvalidQuery, NotFound, ValidationFailed
from apps.credits import rendering as R
from apps.credits import selectors as sel
from apps.credits import services as svc
from apps.credits.amounts import (
    PRICE_DECIMAL_PLACES,
    PRICE_MAX_DIGITS,
    WEIGHT_DECIMAL_PLACES,
    WEIGHT_MAX,
    WEIGHT_MAX_DIGITS,
)
from apps.features.selectors import feature_get

from .inputs import _now, denomination_field
from .schema import PRICE_OUT, WEIGHT_OUT, _path


class WeightEntryInput(serializers.Serializer):
    featureKey = StrictCharField(max_length=128, required=False)
    featureId = serializers.UUIDField(required=False)
    model = StrictCharField(max_length=255, required=False, allow_blank=True, allow_null=True)
    creditsPerUnit = serializers.DecimalField(
        max_digits=WEIGHT_MAX_DIGITS,
        decimal_places=WEIGHT_DECIMAL_PLACES,
        min_value=Decimal("0.000001"),
        max_value=WEIGHT_MAX,
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "featureKey" not in attrs and "featureId" not in attrs:
            raise serializers.ValidationError({"featureKey": ["Give featureKey or featureId."]})
        return attrs


class WeightPublishInput(serializers.Serializer):
    effectiveFrom = serializers.DateTimeField()
    entries = WeightEntryInput(many=True, allow_empty=False)  # at most PUBLISH_MAX_ENTRIES


class WeightList(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ}

    @extend_schema(
        summary="Weights in force (?at=), or those scheduled (?scheduled=true)",
        request=None,
        parameters=[
            OpenApiParameter(
                "at",
                OPTIONAL_INSTANT_SCHEMA,
                description="The weights in force then (default now).",
            ),
            OpenApiParameter("scheduled", bool, description="Those not yet in force instead."),
        ],
        responses={200: page("CreditsWeightPage", WEIGHT_OUT)},
    )
    def get(self, request: Request) -> Response:
        environment = environment_of(request)
        now = _now()
        at = _instant_param(request, "at") or now  # checked even when not used
        if query_bool(request.query_params, "scheduled"):
            rows = sel.weights_scheduled(environment, now)
        else:
            rows = sel.weights_in_force(environment, at)
        items = [R.render_weight(row, now) for row in rows]
        return Response({"items": items, "nextCursor": None, "hasMore": False})


def _instant_param(request: Request, name: str) -> Any:
    raw = request.query_params.get(name)
    if not raw:
        return None
    field = serializers.DateTimeField()
    try:
        return field.to_internal_value(raw)
    except serializers.ValidationError:
        raise InvalidQuery(fields={name: ["An ISO 8601 date and time."]}) from None


class WeightPublish(APIView):
    required_scopes = S.BILLING_WRITE

    @extend_schema(
        summary="Publish weights for a future instant (never changed once in force)",
        request=WeightPublishInput,
        responses={
            201: inline_serializer(
                "CreditsWeightsPublished",
                fields={
                    "effectiveFrom": serializers.DateTimeField(),
                    "items": many(WEIGHT_OUT),
                },
            )
        },
    )
    def post(self, request: Request) -> Response:
        body = WeightPublishInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        environment = environment_of(request)
        entries = []
        for index, entry in enumerate(data["entries"]):
            try:
                if "featureId" in entry:
                    feature = sel.feature_by_id(environment, entry["featureId"])
                else:
                    feature = feature_get(environment, entry["featureKey"])
            except NotFound:
                raise ValidationFailed(
                    fields={f"entries.{index}.featureKey": ["No such feature."]}
                ) from None
            entries.append(
                svc.WeightEntry(feature, entry.get("model") or "", entry["creditsPerUnit"])
            )
        rows = svc.credit_weights_publish(
            environment=environment,
            effective_from=data["effectiveFrom"],
            entries=entries,
            actor=Actor.from_request(request),
        )
        now = _now()
        features = {entry.feature.pk: entry.feature for entry in entries}
        for row in rows:
            row.feature = features.get(row.feature_id) or row.feature
        return Response(
            {
                "effectiveFrom": data["effectiveFrom"],
                "items": [R.render_weight(row, now) for row in rows],
            },
            status=status.HTTP_201_CREATED,
        )


class WeightDetail(APIView):
    required_scopes = {"DELETE": S.BILLING_WRITE}

    @extend_schema(
        summary="Withdraw a weight not yet in force (409 weight_in_force)",
        request=None,
        parameters=[_path("weight_id", "The weight's id.")],
        responses={204: None},
    )
    def delete(self, request: Request, weight_id: str) -> Response:
        weight = sel.weight_get(environment_of(request), weight_id)
        svc.credit_weight_withdraw(weight=weight, actor=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class PriceEntryInput(serializers.Serializer):
    denomination = denomination_field()
    currency = serializers.RegexField(r"^[A-Za-z]{3}$", required=False, default="USD")
    pricePerCredit = serializers.DecimalField(
        max_digits=PRICE_MAX_DIGITS,
        decimal_places=PRICE_DECIMAL_PLACES,
        min_value=Decimal("0.000000000001"),
    )


class PricePublishInput(serializers.Serializer):
    effectiveFrom = serializers.DateTimeField()
    entries = PriceEntryInput(many=True, allow_empty=False)  # at most PUBLISH_MAX_ENTRIES


class PriceList(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ}
    customer_key_scope = S.CUSTOMER_READ

    @extend_schema(
        summary="The price book: the price per credit in force now",
        request=None,
        responses={200: page("CreditsPricePage", PRICE_OUT)},
    )
    def get(self, request: Request) -> Response:
        rows = sel.prices_in_force(environment_of(request), _now())
        items = [R.render_price(row) for row in rows]
        return Response({"items": items, "nextCursor": None, "hasMore": False})


class PricePublish(APIView):
    required_scopes = S.BILLING_WRITE

    @extend_schema(
        summary="Publish prices per credit for a future instant",
        request=PricePublishInput,
        responses={
            201: inline_serializer(
                "CreditsPricesPublished",
                fields={
                    "effectiveFrom": serializers.DateTimeField(),
                    "items": many(PRICE_OUT),
                },
            )
        },
    )
    def post(self, request: Request) -> Response:
        body = PricePublishInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        rows = svc.credit_prices_publish(
            environment=environment_of(request),
            effective_from=data["effectiveFrom"],
            entries=[
                svc.PriceEntry(entry["denomination"], entry["currency"], entry["pricePerCredit"])
                for entry in data["entries"]
            ],
            actor=Actor.from_request(request),
        )
        return Response(
            {"effectiveFrom": data["effectiveFrom"], "items": [R.render_price(r) for r in rows]},
            status=status.HTTP_201_CREATED,
        )
