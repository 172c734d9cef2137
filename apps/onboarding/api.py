"""Programmatic signup: ``POST /api/signup`` creates an account and an obs_ key."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.audit import Actor
from apps.accounts.models import Environment, Organization
from apps.apikeys import scopes as S
from apps.apikeys.api import BudgetDoc, render_budget
from apps.apikeys.authentication import request_key
from apps.apikeys.idempotency import APIView
from apps.apikeys.models import ApiKey
from apps.core.errors import RateLimited
from apps.core.middleware import client_ip
from apps.core.ratelimit import LimiterUnavailable, sliding_hit
from apps.core.redis import global_key
from apps.events import usage as ledger

from .selectors import signup_wait_from_audit
from .services import programmatic_signup

_SIGNUP_WINDOW = 3600  # seconds: settings.SIGNUP_RATE_LIMIT_PER_HOUR in any hour


def _signup_wait(ip: str) -> int | None:
    """Seconds this address must wait before its next signup, or None.

    A sliding hour in Redis, counting attempts; while Redis is unavailable, the
    signups of the last hour in PostgreSQL (the audit log), so the limit still holds.
    """
    limit = settings.SIGNUP_RATE_LIMIT_PER_HOUR
    try:
        return sliding_hit(global_key("signup-ip", ip), limit, _SIGNUP_WINDOW)
    except LimiterUnavailable:
        return signup_wait_from_audit(ip, limit=limit, window_seconds=_SIGNUP_WINDOW)


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


# snake_case, as the public signup API documents it.
_SIGNUP_ANSWER = inline_serializer(
    "OnboardingSignup",
    fields={
        "key": serializers.CharField(help_text="the obs_ key, shown once"),
        "id": serializers.UUIDField(),
        "hint": serializers.CharField(help_text="last four characters of the key"),
        "scopes": serializers.ListField(child=serializers.CharField()),
        "budget_cents": serializers.IntegerField(allow_null=True),
        "budget_period": serializers.ChoiceField(
            choices=ApiKey.BudgetPeriod.values, allow_null=True, help_text="null: lifetime"
        ),
        "expires_at": serializers.DateTimeField(allow_null=True),
        "organization_id": serializers.UUIDField(),
        "environment": serializers.ChoiceField(choices=Environment.Kind.values),
    },
)


class Signup(APIView):
    """No key needed; SIGNUP_RATE_LIMIT_PER_HOUR (3) per client IP in any hour."""

    public = True
    authentication_classes: list[type] = []
    throttle_classes: list[type] = []

    @extend_schema(
        summary="Create an account and an obs_ key in one call",
        request=SignupInput,
        responses={
            201: _SIGNUP_ANSWER,
            429: OpenApiResponse(
                description="rate_limited: 3 signups per client IP in any 60 minutes"
            ),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        wait = _signup_wait(client_ip(request))
        if wait is not None:
            raise RateLimited(wait, "Signup limit reached for this address; try again later.")
        body = SignupInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        # The user, organization and key commit together, and what runs after the
        # commit (the set-password email's enqueue) cannot fail the answer that carries
        # the key: an account is never created without its key reaching the caller.
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


def _month_bounds(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    start = now.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end


_LIMIT = inline_serializer(
    "OnboardingPlanLimit",
    fields={
        "feature": serializers.ChoiceField(choices=["events", "customers", "models"]),
        "used": serializers.IntegerField(),
        "limit": serializers.IntegerField(allow_null=True, help_text="always null: unlimited"),
        "remaining": serializers.IntegerField(allow_null=True),
        "unlimited": serializers.BooleanField(),
    },
    many=True,
)
_ACCOUNT_PLAN = inline_serializer(
    "OnboardingAccountPlan",
    fields={
        "plan": inline_serializer(
            "OnboardingPlanInfo",
            fields={
                "key": serializers.CharField(help_text="self_hosted"),
                "name": serializers.CharField(),
                "mode": serializers.ChoiceField(choices=Organization.Mode.values),
            },
        ),
        "environment": serializers.ChoiceField(choices=Environment.Kind.values),
        "period": inline_serializer(
            "OnboardingPlanPeriod",
            fields={"start": serializers.DateTimeField(), "end": serializers.DateTimeField()},
            help_text="this calendar month (UTC)",
        ),
        "features": _LIMIT,
        "usage": inline_serializer(
            "OnboardingPlanUsage",
            fields={
                "events": serializers.IntegerField(),
                "unpricedEvents": serializers.IntegerField(),
                "cost": serializers.DecimalField(max_digits=24, decimal_places=12, help_text="USD"),
                "revenue": serializers.DecimalField(
                    max_digits=24, decimal_places=12, help_text="USD"
                ),
            },
            help_text="this environment's usage this month",
        ),
        "keyBudget": BudgetDoc(allow_null=True, help_text="the calling key's budget, if any"),
    },
)


class AccountPlan(APIView):
    """The account's plan, its limits, and what this environment used this month.

    A self-hosted Tanso has one plan and no quotas: every limit is reported as
    unlimited, with the month's usage beside it, so scripts written for the
    hosted ``/api/plan`` keep working. The calling key's own budget (if any)
    is the one limit that applies, and is reported with what is left of it.
    """

    # The month's cost and revenue are the company's books: usage.read, as for the same
    # totals in /api/analytics/overview (the public page's signup key, usage.read +
    # events.write + proxy.chat, reads its plan), and never a customer key (ck_).
    required_scopes = S.USAGE_READ

    @extend_schema(
        summary="The account's plan, per-feature limits and this month's usage",
        request=None,
        responses={200: _ACCOUNT_PLAN},
    )
    def get(self, request: Request) -> Response:
        key = request_key(request)
        environment = key.environment
        start, end = _month_bounds(timezone.now())
        totals = ledger.usage_totals(environment, start=start, end=end)
        customers = ledger.usage(
            environment, start=start, end=end, group_by=(ledger.Grain.CUSTOMER,)
        )
        models = ledger.usage(environment, start=start, end=end, group_by=(ledger.Grain.MODEL,))
        # Distinct model names (events that named none count as one, as they always have).
        model_count = len({row.key.model for row in models})

        def unlimited(feature: str, used: object) -> dict[str, object]:
            return {
                "feature": feature,
                "used": used,
                "limit": None,
                "remaining": None,
                "unlimited": True,
            }

        return Response(
            {
                "plan": {
                    "key": "self_hosted",
                    "name": "Self-hosted",
                    "mode": environment.organization.mode,
                },
                "environment": environment.kind,
                "period": {"start": start, "end": end},
                "features": [
                    unlimited("events", totals.event_count),
                    unlimited("customers", len(customers)),
                    unlimited("models", model_count),
                ],
                "usage": {
                    "events": totals.event_count,
                    "unpricedEvents": totals.unpriced_count,
                    "cost": totals.cost_usd,
                    "revenue": totals.revenue_usd,
                },
                "keyBudget": render_budget(key),
            }
        )
