"""Provider credentials of the environment: ``/api/v1/gateway/credentials``.

A credential is shown only by its hint (the secret's last four characters); the secret
itself is write-only. Managing them needs the ``admin`` scope (they spend money).
"""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.apikeys import scopes as S
from apps.apikeys.authentication import environment_of
from apps.apikeys.idempotency import APIView
from apps.core.api.fields import StrictCharField
from apps.core.api.schema import many

from .models import ModelRoute, Provider, ProviderCredential
from .selectors import credential_get, credentials_list, route_get, routes_list
from .services import (
    MAX_TARGETS,
    SECRET_MAX_LENGTH,
    credential_delete,
    credential_set,
    route_delete,
    route_set,
)


def render_credential(credential: ProviderCredential) -> dict[str, Any]:
    return {
        "id": credential.pk,
        "provider": credential.provider,
        "hint": f"…{credential.hint}",
        "baseUrl": credential.base_url or None,
        "createdAt": credential.created_at,
        "updatedAt": credential.updated_at,
    }


_CREDENTIAL = inline_serializer(
    "GatewayCredential",
    fields={
        "id": serializers.UUIDField(),
        "provider": serializers.ChoiceField(choices=Provider.values),
        "hint": serializers.CharField(help_text="The key's last four characters"),
        "baseUrl": serializers.CharField(allow_null=True),
        "createdAt": serializers.DateTimeField(),
        "updatedAt": serializers.DateTimeField(),
    },
)
_CREDENTIAL_LIST = inline_serializer("GatewayCredentialList", fields={"items": many(_CREDENTIAL)})


SECRET_PATTERN = r"^[!-~]{8,}$"
BASE_URL_PATTERN = r"^https?://[!-.0-~]+(/[!-~]*)?$"


class CredentialInput(serializers.Serializer):
    provider = serializers.ChoiceField(choices=Provider.values)
    apiKey = StrictCharField(
        max_length=SECRET_MAX_LENGTH,
        write_only=True,
        trim_whitespace=False,
        validators=[RegexValidator(SECRET_PATTERN, "8 or more printable characters, no spaces.")],
        help_text="The provider's API key (write-only; shown afterwards by its hint)",
    )
    baseUrl = StrictCharField(
        max_length=500,
        required=False,
        allow_blank=True,
        allow_null=True,
        trim_whitespace=False,
        validators=[RegexValidator(BASE_URL_PATTERN, "An http:// or https:// URL.")],
        help_text="A compatible endpoint instead of the provider's own API",
    )


class CredentialListSet(APIView):
    required_scopes = S.ADMIN

    @extend_schema(
        summary="List the environment's provider keys (hints only)",
        operation_id="v1_gateway_credentials_list",
        request=None,
        responses={200: _CREDENTIAL_LIST},
    )
    def get(self, request: Request) -> Response:
        items = [render_credential(c) for c in credentials_list(environment_of(request))]
        return Response({"items": items})

    @extend_schema(
        summary="Set the environment's key for a provider (replaces the previous one)",
        request=CredentialInput,
        responses={201: _CREDENTIAL},
    )
    def post(self, request: Request) -> Response:
        body = CredentialInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        credential = credential_set(
            environment=environment_of(request),
            provider=data["provider"],
            secret=data["apiKey"],
            base_url=data.get("baseUrl") or "",
        )
        return Response(render_credential(credential), status=status.HTTP_201_CREATED)


class CredentialDetail(APIView):
    required_scopes = S.ADMIN

    @extend_schema(
        summary="Get one provider key (hint only)", request=None, responses={200: _CREDENTIAL}
    )
    def get(self, request: Request, credential_id: str) -> Response:
        return Response(render_credential(credential_get(environment_of(request), credential_id)))

    @extend_schema(summary="Delete a provider key", request=None, responses={204: None})
    def delete(self, request: Request, credential_id: str) -> Response:
        credential_delete(credential=credential_get(environment_of(request), credential_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


def render_route(route: ModelRoute) -> dict[str, Any]:
    return {
        "id": route.pk,
        "provider": route.provider,
        "alias": route.alias,
        "targets": list(route.targets),
        "createdAt": route.created_at,
    }


_ROUTE = inline_serializer(
    "GatewayRoute",
    fields={
        "id": serializers.UUIDField(),
        "provider": serializers.ChoiceField(choices=Provider.values),
        "alias": serializers.CharField(),
        "targets": serializers.ListField(child=serializers.CharField()),
        "createdAt": serializers.DateTimeField(),
    },
)
_ROUTE_LIST = inline_serializer("GatewayRouteList", fields={"items": many(_ROUTE)})


class RouteInput(serializers.Serializer):
    provider = serializers.ChoiceField(choices=Provider.values)
    alias = StrictCharField(max_length=255)
    targets = serializers.ListField(
        child=StrictCharField(max_length=255),
        min_length=1,
        max_length=MAX_TARGETS,
        help_text="Models tried in order (one may repeat: a retry); the next is tried on"
        " a connect error, 408, 429, 5xx or 529",
    )


class RouteListSet(APIView):
    required_scopes = {"GET": S.USAGE_READ, "HEAD": S.USAGE_READ, "POST": S.ADMIN}

    @extend_schema(
        summary="List the gateway's model routes (alias -> fallbacks)",
        operation_id="v1_gateway_routes_list",
        request=None,
        responses={200: _ROUTE_LIST},
    )
    def get(self, request: Request) -> Response:
        return Response({"items": [render_route(r) for r in routes_list(environment_of(request))]})

    @extend_schema(
        summary="Route an alias model name to models tried in order (replaces its route)",
        request=RouteInput,
        responses={201: _ROUTE},
    )
    def post(self, request: Request) -> Response:
        body = RouteInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        route = route_set(
            environment=environment_of(request),
            provider=data["provider"],
            alias=data["alias"],
            targets=list(data["targets"]),
        )
        return Response(render_route(route), status=status.HTTP_201_CREATED)


class RouteDetail(APIView):
    required_scopes = S.ADMIN

    @extend_schema(summary="Delete a model route", request=None, responses={204: None})
    def delete(self, request: Request, route_id: str) -> Response:
        route_delete(route=route_get(environment_of(request), route_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
