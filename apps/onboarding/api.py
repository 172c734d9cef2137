"""Programmatic signup: ``POST /api/signup`` creates an account and an obs_ key."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.audit import Actor
from apps.apikeys import scopes as S
from apps.apikeys.models import ApiKey
from apps.core.errors import RateLimited
from apps.core.middleware import client_ip
from apps.core.ratelimit import hit
from apps.core.redis import global_key

from .services import programmatic_signup


class SignupInput(serializers.Serializer):
    email = serializers.EmailField()
    scopes = serializers.ListField(
        child=serializers.CharField(max_length=32), required=False, allow_empty=False
    )
    budget_cents = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    budget_period = serializers.ChoiceField(
        choices=ApiKey.BudgetPeriod.values, required=False, allow_null=True
    )
    expires_in_seconds = serializers.IntegerField(min_value=60, required=False, allow_null=True)

    def validate_scopes(self, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in S.ALL_SCOPES]
        if unknown:
            raise serializers.ValidationError(f"Unknown scope: {', '.join(unknown)}.")
        refused = [s for s in value if s not in S.SIGNUP_ALLOWED]
        if refused:
            raise serializers.ValidationError(
                f"Not available at signup: {', '.join(refused)}. A person must create such keys."
            )
        return value


class Signup(APIView):
    """No key needed; 3 per hour per client IP."""

    public = True
    authentication_classes: list[type] = []
    throttle_classes: list[type] = []

    @extend_schema(
        summary="Create an account and an obs_ key in one call", request=SignupInput, auth=[]
    )
    def post(self, request: Request) -> Response:
        wait = hit(
            global_key("signup-ip", client_ip(request)), settings.SIGNUP_RATE_LIMIT_PER_HOUR, 3600
        )
        if wait is not None:
            raise RateLimited(wait, "Signup limit reached for this address; try again later.")
        body = SignupInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        with transaction.atomic():
            result = programmatic_signup(
                email=data["email"],
                scopes=data.get("scopes") or list(S.SIGNUP_DEFAULT),
                budget_cents=data.get("budget_cents"),
                budget_period=data.get("budget_period"),
                expires_at=(
                    timezone.now() + dt.timedelta(seconds=data["expires_in_seconds"])
                    if data.get("expires_in_seconds")
                    else None
                ),
                actor=Actor.from_request(request),
            )
        key = result.issued.key
        return Response(
            {
                "key": result.issued.plaintext,
                "id": key.pk,
                "hint": key.hint,
                "scopes": list(key.scopes),
                "budget_cents": key.budget_cents,
                "budget_period": key.budget_period,
                "expires_at": key.expires_at,
                "organization_id": result.organization.pk,
                "environment": key.environment.kind,
            },
            status=status.HTTP_201_CREATED,
        )
