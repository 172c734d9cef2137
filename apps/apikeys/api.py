"""API: manage keys (admin scope), introspect the calling key, programmatic signup."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Prefetch
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.audit import Actor
from apps.accounts.models import Environment
from apps.core.api.pagination import paginate_newest_first
from apps.core.api.query import query_choice
from apps.core.api.schema import PAGE_PARAMETERS, documented, page
from apps.core.tenancy import get_scoped_or_404
from apps.customers.models import Customer

from . import scopes as S
from .authentication import request_key
from .idempotency import APIView
from .models import ApiKey, ApiKeySpend
from .selectors import apikey_get, apikeys_for
from .services import (
    IssuedKey,
    apikey_budget,
    apikey_create,
    apikey_revoke,
    apikey_rotate,
    current_window_starts,
)


def render_budget(key: ApiKey) -> dict[str, Any] | None:
    if key.budget_cents is None and key.kind != ApiKey.Kind.OBSERVE:
        return None
    state = apikey_budget(key)
    return {
        "limitCents": state.limit_cents,
        "spentCents": state.spent_usd * 100,
        "remainingCents": state.remaining_cents,
        "period": state.period,
        "resetsAt": state.resets_at,
    }


def render_key(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.pk,
        "kind": key.kind,
        "name": key.name,
        "prefix": key.prefix,
        "hint": key.hint,
        "environment": key.environment.kind,
        "scopes": sorted(key.effective_scopes),
        "customerReferenceId": key.customer.reference_id if key.customer else None,
        "budget": render_budget(key),
        "status": key.status,
        "expiresAt": key.expires_at,
        "revokedAt": key.revoked_at,
        "lastUsedAt": key.last_used_at,
        "createdAt": key.created_at,
        "rotatedFromId": key.rotated_from_id,
    }


def render_issued(issued: IssuedKey) -> dict[str, Any]:
    return {**render_key(issued.key), "key": issued.plaintext}


# What a key may be given: secret and SDK scopes, and those of customer keys.
KEY_SCOPES = [*S.ALL_SCOPES, *S.CUSTOMER_SCOPES]


class KeyCreateInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ApiKey.Kind.values, default=ApiKey.Kind.OBSERVE)
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    scopes = serializers.ListField(
        child=documented(
            serializers.CharField(max_length=32),
            {"type": "string", "enum": KEY_SCOPES},
        ),
        required=False,
        help_text="obs_ keys: at least one; ck_ keys: read and/or purchase",
    )
    customerReferenceId = serializers.CharField(max_length=255, required=False)
    budgetCents = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    budgetPeriod = serializers.ChoiceField(
        choices=ApiKey.BudgetPeriod.values, required=False, allow_null=True
    )
    expiresAt = serializers.DateTimeField(required=False, allow_null=True)
    # At most ten years: a later expiry overflows the calendar (a 500, not a 400).
    expiresInSeconds = serializers.IntegerField(
        min_value=60, max_value=10 * 366 * 86400, required=False, allow_null=True
    )


def _expiry(data: dict[str, Any]) -> dt.datetime | None:
    if data.get("expiresInSeconds"):
        return timezone.now() + dt.timedelta(seconds=data["expiresInSeconds"])
    return data.get("expiresAt")


# --- OpenAPI shapes of the answers above ---------------------------------------------------

# The class, shared by every answer that carries a budget (one component).
BudgetDoc = type(
    inline_serializer(
        "ApikeysBudget",
        fields={
            "limitCents": serializers.IntegerField(allow_null=True, help_text="null: no limit"),
            "spentCents": serializers.DecimalField(max_digits=24, decimal_places=12),
            "remainingCents": serializers.DecimalField(
                max_digits=24, decimal_places=12, allow_null=True
            ),
            "period": serializers.ChoiceField(
                choices=ApiKey.BudgetPeriod.values, allow_null=True, help_text="null: lifetime"
            ),
            "resetsAt": serializers.DateTimeField(allow_null=True),
        },
    )
)


def _key_fields() -> dict[str, serializers.Field]:
    return {
        "id": serializers.UUIDField(),
        "kind": serializers.ChoiceField(choices=ApiKey.Kind.values),
        "name": serializers.CharField(),
        "prefix": serializers.CharField(),
        "hint": serializers.CharField(help_text="last four characters of the key"),
        "environment": serializers.ChoiceField(choices=Environment.Kind.values),
        "scopes": serializers.ListField(child=serializers.CharField()),
        "customerReferenceId": serializers.CharField(allow_null=True),
        "budget": BudgetDoc(
            allow_null=True, help_text="null when the key has no budget (obs_ keys always have one)"
        ),
        "status": serializers.ChoiceField(choices=["active", "expired", "revoked"]),
        "expiresAt": serializers.DateTimeField(allow_null=True),
        "revokedAt": serializers.DateTimeField(allow_null=True),
        "lastUsedAt": serializers.DateTimeField(allow_null=True),
        "createdAt": serializers.DateTimeField(),
        "rotatedFromId": serializers.UUIDField(allow_null=True),
    }


_KEY = inline_serializer("ApikeysKey", fields=_key_fields())
_ISSUED = inline_serializer(
    "ApikeysIssuedKey",
    fields={**_key_fields(), "key": serializers.CharField(help_text="the secret, shown once")},
)
_KEY_LIST = page("ApikeysKeyList", _KEY)
_KEY_ME = inline_serializer(
    "ApikeysKeyMe",
    fields={
        "id": serializers.UUIDField(),
        "kind": serializers.ChoiceField(choices=ApiKey.Kind.values),
        "prefix": serializers.CharField(),
        "hint": serializers.CharField(),
        "environment": serializers.ChoiceField(choices=Environment.Kind.values),
        "organizationId": serializers.UUIDField(),
        "scopes": serializers.ListField(child=serializers.CharField()),
        "customerReferenceId": serializers.CharField(allow_null=True),
        "budget": BudgetDoc(
            allow_null=True, help_text="null when the key has no budget (obs_ keys always have one)"
        ),
        "expiresAt": serializers.DateTimeField(allow_null=True),
    },
)


class SdkKeyListCreate(APIView):
    required_scopes = S.ADMIN

    @extend_schema(
        summary="List API keys of the environment",
        operation_id="sdk_keys_list",
        request=None,
        parameters=[
            OpenApiParameter("status", str, enum=["active"], description="only unrevoked keys"),
            *PAGE_PARAMETERS,
        ],
        responses={200: _KEY_LIST},
    )
    def get(self, request: Request) -> Response:
        keys = apikeys_for(request_key(request).environment).prefetch_related(
            Prefetch(
                "spend_windows",
                queryset=ApiKeySpend.objects.filter(window_start__in=current_window_starts()),
            )
        )
        if query_choice(request.query_params, "status", ["active"]):
            keys = keys.filter(revoked_at__isnull=True)
        return Response(paginate_newest_first(keys, request, render_key))

    @extend_schema(
        summary="Create an API key (the secret is in the answer, once)",
        request=KeyCreateInput,
        responses={201: _ISSUED},
    )
    def post(self, request: Request) -> Response:
        body = KeyCreateInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        environment: Environment = request_key(request).environment
        customer = None
        if data.get("customerReferenceId"):
            customer = get_scoped_or_404(
                Customer, environment, reference_id=data["customerReferenceId"]
            )
        issued = apikey_create(
            environment=environment,
            kind=data["kind"],
            actor=Actor.from_request(request),
            name=data.get("name", ""),
            scopes=data.get("scopes"),
            customer=customer,
            budget_cents=data.get("budgetCents"),
            budget_period=data.get("budgetPeriod"),
            expires_at=_expiry(data),
        )
        return Response(render_issued(issued), status=status.HTTP_201_CREATED)


class SdkKeyDetail(APIView):
    required_scopes = S.ADMIN

    @extend_schema(summary="Get one API key", request=None, responses={200: _KEY})
    def get(self, request: Request, key_id: str) -> Response:
        return Response(render_key(apikey_get(request_key(request).environment, key_id)))

    @extend_schema(summary="Revoke an API key", request=None, responses={200: _KEY})
    def delete(self, request: Request, key_id: str) -> Response:
        key = apikey_get(request_key(request).environment, key_id)
        apikey_revoke(key=key, actor=Actor.from_request(request))
        return Response(render_key(key))


class SdkKeyRotate(APIView):
    required_scopes = S.ADMIN

    @extend_schema(
        summary="Rotate: a new key with the same powers; the old one works until revoked",
        request=None,
        responses={201: _ISSUED},
    )
    def post(self, request: Request, key_id: str) -> Response:
        key = apikey_get(request_key(request).environment, key_id)
        issued = apikey_rotate(key=key, actor=Actor.from_request(request))
        return Response(render_issued(issued), status=status.HTTP_201_CREATED)


class SdkKeyMe(APIView):
    required_scopes = None  # any valid key may look at itself
    customer_key_scope = S.CUSTOMER_READ

    @extend_schema(
        summary="The calling key: scopes, budget and expiry", request=None, responses={200: _KEY_ME}
    )
    def get(self, request: Request) -> Response:
        key = request_key(request)
        return Response(
            {
                "id": key.pk,
                "kind": key.kind,
                "prefix": key.prefix,
                "hint": key.hint,
                "environment": key.environment.kind,
                "organizationId": key.environment.organization_id,
                "scopes": sorted(key.effective_scopes),
                "customerReferenceId": key.customer.reference_id if key.customer else None,
                "budget": render_budget(key),
                "expiresAt": key.expires_at,
            }
        )


# --- Customer keys under the customer (Platform reference paths) ---------------------------


class CustomerKeyCreateInput(serializers.Serializer):
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=S.CUSTOMER_SCOPES), required=False, allow_empty=False
    )
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    expiresAt = serializers.DateTimeField(required=False, allow_null=True)


def _customer(request: Request, reference_id: str) -> Customer:
    return get_scoped_or_404(Customer, request_key(request).environment, reference_id=reference_id)


def _customer_key(request: Request, reference_id: str, key_id: str) -> ApiKey:
    customer = _customer(request, reference_id)
    return get_scoped_or_404(
        apikeys_for(request_key(request).environment),
        request_key(request).environment,
        pk=key_id,
        customer=customer,
    )


def render_customer_key(key: ApiKey, plaintext: str | None = None) -> dict[str, Any]:
    body = {
        "id": key.pk,
        "customerReferenceId": key.customer.reference_id if key.customer else None,
        "keyHint": key.hint,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "active": key.status == "active",
        "expiresAt": key.expires_at,
        "createdAt": key.created_at,
    }
    if plaintext is not None:
        body["apiKey"] = plaintext
    return body


_CUSTOMER_KEY_FIELDS: dict[str, serializers.Field] = {
    "id": serializers.UUIDField(),
    "customerReferenceId": serializers.CharField(allow_null=True),
    "keyHint": serializers.CharField(help_text="last four characters of the key"),
    "prefix": serializers.CharField(),
    "scopes": serializers.ListField(child=serializers.ChoiceField(choices=S.CUSTOMER_SCOPES)),
    "active": serializers.BooleanField(),
    "expiresAt": serializers.DateTimeField(allow_null=True),
    "createdAt": serializers.DateTimeField(),
}
_CUSTOMER_KEY = inline_serializer("ApikeysCustomerKey", fields=_CUSTOMER_KEY_FIELDS)
_CUSTOMER_KEY_ISSUED = inline_serializer(
    "ApikeysCustomerKeyIssued",
    fields={
        **_CUSTOMER_KEY_FIELDS,
        "apiKey": serializers.CharField(help_text="the secret, shown once"),
    },
)
_CUSTOMER_KEY_LIST = page("ApikeysCustomerKeyList", _CUSTOMER_KEY)


class CustomerKeys(APIView):
    required_scopes = {"GET": S.CUSTOMERS_READ, "POST": S.CUSTOMERS_WRITE}

    @extend_schema(
        summary="List a customer's keys (hints only)",
        request=None,
        parameters=PAGE_PARAMETERS,
        responses={200: _CUSTOMER_KEY_LIST},
    )
    def get(self, request: Request, reference_id: str) -> Response:
        customer = _customer(request, reference_id)
        keys = apikeys_for(request_key(request).environment).filter(customer=customer)
        return Response(paginate_newest_first(keys, request, render_customer_key))

    @extend_schema(
        summary="Issue a key pinned to this customer (shown once)",
        request=CustomerKeyCreateInput,
        responses={201: _CUSTOMER_KEY_ISSUED},
    )
    def post(self, request: Request, reference_id: str) -> Response:
        body = CustomerKeyCreateInput(data=request.data)
        body.is_valid(raise_exception=True)
        issued = apikey_create(
            environment=request_key(request).environment,
            kind=ApiKey.Kind.CUSTOMER,
            actor=Actor.from_request(request),
            name=body.validated_data.get("name", ""),
            scopes=body.validated_data.get("scopes"),
            customer=_customer(request, reference_id),
            expires_at=body.validated_data.get("expiresAt"),
        )
        return Response(
            render_customer_key(issued.key, issued.plaintext), status=status.HTTP_201_CREATED
        )


class CustomerKeyRevoke(APIView):
    required_scopes = S.CUSTOMERS_WRITE

    @extend_schema(summary="Revoke a customer key", request=None, responses={200: _CUSTOMER_KEY})
    def delete(self, request: Request, reference_id: str, key_id: str) -> Response:
        key = _customer_key(request, reference_id, key_id)
        apikey_revoke(key=key, actor=Actor.from_request(request))
        return Response(render_customer_key(key))


class CustomerKeyRotate(APIView):
    required_scopes = S.CUSTOMERS_WRITE

    @extend_schema(
        summary="Replace this customer key with a new one (same scopes)",
        request=None,
        responses={201: _CUSTOMER_KEY_ISSUED},
    )
    def post(self, request: Request, reference_id: str, key_id: str) -> Response:
        key = _customer_key(request, reference_id, key_id)
        issued = apikey_rotate(key=key, actor=Actor.from_request(request))
        return Response(
            render_customer_key(issued.key, issued.plaintext), status=status.HTTP_201_CREATED
        )
