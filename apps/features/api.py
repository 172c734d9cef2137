"""Client API for features: ``/api/v1/client/features``.

Features are addressed by ``featureKey`` in the path (a ``<str:>`` converter:
a key containing ``/`` cannot be put in the path; find it with
``GET /features?search=...``).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.audit import Actor
from apps.apikeys import scopes as S
from apps.apikeys.authentication import environment_of
from apps.apikeys.idempotency import APIView

# The strict field types are shared by the catalog's two APIs.
from apps.core.api.fields import MetadataField, StrictCharField
from apps.core.api.pagination import paginate_newest_first
from apps.core.api.schema import PAGE_PARAMETERS, page
from apps.core.errors import InvalidQuery

from .models import Feature
from .selectors import feature_get, features_search
from .services import KEY_MAX_LENGTH, feature_create, feature_update


def render_feature(feature: Feature) -> dict[str, Any]:
    return {
        "id": feature.pk,
        "key": feature.key,
        "name": feature.name,
        "description": feature.description,
        "unitLabel": feature.unit_label,
        "isEnabled": feature.is_enabled,
        "metadata": feature.metadata,
        "source": feature.source,
        "createdAt": feature.created_at,
        "modifiedAt": feature.updated_at,
    }


_FEATURE = inline_serializer(
    "FeaturesFeature",
    fields={
        "id": serializers.UUIDField(),
        "key": serializers.CharField(),
        "name": serializers.CharField(),
        "description": serializers.CharField(),
        "unitLabel": serializers.CharField(),
        "isEnabled": serializers.BooleanField(),
        "metadata": serializers.JSONField(help_text="a JSON object"),
        "source": serializers.ChoiceField(choices=Feature.Source.values),
        "createdAt": serializers.DateTimeField(),
        "modifiedAt": serializers.DateTimeField(),
    },
)
_FEATURE_LIST = page("FeaturesFeatureList", _FEATURE)


class StrictBooleanField(serializers.BooleanField):
    """Only JSON ``true``/``false``: DRF's own also takes "yes", 1, "on"..."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class FeatureFieldsInput(serializers.Serializer):
    name = StrictCharField(max_length=150, required=False)
    description = StrictCharField(
        max_length=10_000, required=False, allow_blank=True, allow_null=True
    )
    unitLabel = StrictCharField(max_length=40, required=False, allow_blank=True, allow_null=True)
    isEnabled = StrictBooleanField(required=False)
    metadata = MetadataField(required=False)

    _FIELD_MAP = {
        "name": "name",
        "description": "description",
        "unitLabel": "unit_label",
        "isEnabled": "is_enabled",
        "metadata": "metadata",
    }

    def service_fields(self) -> dict[str, Any]:
        """The given fields as service keywords; ``null`` text becomes ``""``."""
        data = self.validated_data
        out = {self._FIELD_MAP[name]: data[name] for name in self._FIELD_MAP if name in data}
        for text in ("description", "unit_label"):
            if text in out and out[text] is None:
                out[text] = ""
        return out


class FeatureCreateInput(FeatureFieldsInput):
    key = StrictCharField(max_length=KEY_MAX_LENGTH, trim_whitespace=False)
    name = StrictCharField(max_length=150)
    # Hosted docs send a feature type ("USAGE_BASED"); every feature is metered here.
    type = StrictCharField(max_length=40, required=False, allow_blank=True, allow_null=True)


class FeatureListCreate(APIView):
    required_scopes = {"GET": S.USAGE_READ, "HEAD": S.USAGE_READ, "POST": S.USAGE_WRITE}

    @extend_schema(
        summary="List features, newest first",
        operation_id="v1_client_features_list",
        request=None,
        parameters=[
            OpenApiParameter("search", str, description="Text in the key or name"),
            OpenApiParameter("isEnabled", bool),
            *PAGE_PARAMETERS,
        ],
        responses={200: _FEATURE_LIST},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        enabled_param = params.get("isEnabled")
        is_enabled = None
        if enabled_param:
            if enabled_param not in {"true", "false"}:
                raise InvalidQuery(fields={"isEnabled": ["Must be true or false."]})
            is_enabled = enabled_param == "true"
        features = features_search(
            environment_of(request), params.get("search", ""), is_enabled=is_enabled
        )
        return Response(paginate_newest_first(features, request, render_feature))

    @extend_schema(
        summary="Define a feature", request=FeatureCreateInput, responses={201: _FEATURE}
    )
    def post(self, request: Request) -> Response:
        body = FeatureCreateInput(data=request.data)
        body.is_valid(raise_exception=True)
        feature = feature_create(
            environment=environment_of(request),
            key=body.validated_data["key"],
            actor=Actor.from_request(request),
            **body.service_fields(),
        )
        return Response(render_feature(feature), status=status.HTTP_201_CREATED)


class FeatureDetail(APIView):
    required_scopes = {"GET": S.USAGE_READ, "HEAD": S.USAGE_READ, "PATCH": S.USAGE_WRITE}

    @extend_schema(summary="Get one feature by its key", request=None, responses={200: _FEATURE})
    def get(self, request: Request, feature_key: str) -> Response:
        return Response(render_feature(feature_get(environment_of(request), feature_key)))

    @extend_schema(
        summary="Change a feature", request=FeatureFieldsInput, responses={200: _FEATURE}
    )
    def patch(self, request: Request, feature_key: str) -> Response:
        feature = feature_get(environment_of(request), feature_key)
        body = FeatureFieldsInput(data=request.data)
        body.is_valid(raise_exception=True)
        feature = feature_update(
            feature=feature, actor=Actor.from_request(request), **body.service_fields()
        )
        return Response(render_feature(feature))
