"""API of the recommendations: the ranked findings, computing them, the operator's
decisions, and the table of comparable models (docs/recommendations.md)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.apikeys import scopes as S
from apps.apikeys.authentication import request_key
from apps.apikeys.idempotency import APIView
from apps.core.api.fields import StrictCharField, optional_text
from apps.core.api.pagination import page_limit
from apps.core.api.schema import PAGE_PARAMETERS, decimal, many, page
from apps.core.errors import InvalidQuery
from apps.events import usage as ledger

from .models import ComputeRun, Recommendation
from .selectors import (
    STATUS_FILTERS,
    ComparablePair,
    comparable_model_get,
    comparable_table,
    compute_run_get,
    effective_status,
    recommendation_get,
    recommendations_page,
    recommendations_ranked,
)
from .services import (
    comparable_model_delete,
    comparable_model_set,
    compute_run_create,
    compute_run_enqueue,
    compute_run_execute,
    recommendation_apply,
    recommendation_dismiss,
    recommendation_reopen,
    recommendation_snooze,
)

# POST /api/recommendations/compute answers at once when the window holds at most this
# many events; above it, the compute is a background job whose progress GET shows.
SYNC_MAX_EVENTS = 2_000_000


def _cents(amount: Decimal | None) -> str | None:
    return None if amount is None else f"{amount:.2f}"


def render_recommendation(row: Recommendation, now: dt.datetime) -> dict[str, Any]:
    return {
        "id": row.pk,
        "kind": row.kind,
        "subject": row.subject,
        "title": row.title,
        "status": effective_status(row, now),
        "snoozedUntil": row.snoozed_until if effective_status(row, now) == "snoozed" else None,
        # Rendered with its two places ("60.00"): USD per month.
        "moneyAtStakeMonthly": f"{row.money_at_stake_monthly:.2f}",
        "currency": "USD",
        "direction": row.direction,
        "confidence": row.confidence,
        "assumptions": row.assumptions,
        "evidence": row.evidence,
        "action": row.action,
        "decidedAtStake": _cents(row.decided_at_stake),
        "appliedAt": row.applied_at,
        "appliedAtStake": _cents(row.applied_at_stake),
        "checks": row.checks,
        "window": {"from": row.window_start, "to": row.window_end},
        "firstSeenAt": row.first_seen_at,
        "computedAt": row.computed_at,
        "statusChangedAt": row.status_changed_at,
    }


def render_run(run: ComputeRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "status": run.status,
        "stepsDone": run.steps_done,
        "stepsTotal": run.steps_total,
        "window": {"from": run.window_start, "to": run.window_end},
        "findings": run.findings,
        "moneyAtStakeMonthly": f"{run.money_at_stake_monthly:.2f}",
        "error": run.error or None,
        "requestedBy": run.requested_by,
        "createdAt": run.created_at,
        "startedAt": run.started_at,
        "finishedAt": run.finished_at,
    }


# -- OpenAPI shapes ----------------------------------------------------------------------------

_WINDOW = inline_serializer(
    "RecommendationWindow",
    fields={"from": serializers.DateTimeField(), "to": serializers.DateTimeField()},
)
_RECOMMENDATION = inline_serializer(
    "Recommendation",
    fields={
        "id": serializers.UUIDField(help_text="stable: the same finding keeps its id"),
        "kind": serializers.ChoiceField(choices=Recommendation.Kind.values),
        "subject": serializers.CharField(),
        "title": serializers.CharField(),
        "status": serializers.ChoiceField(choices=Recommendation.Status.values),
        "snoozedUntil": serializers.DateTimeField(allow_null=True),
        "moneyAtStakeMonthly": decimal(help_text="USD per month"),
        "currency": serializers.CharField(),
        "direction": serializers.ChoiceField(choices=Recommendation.Direction.values),
        "confidence": serializers.ChoiceField(choices=Recommendation.Confidence.values),
        "assumptions": serializers.JSONField(help_text="[{name, value, note}]: every constant"),
        "evidence": serializers.JSONField(
            help_text="window, event count, amounts and the top contributors"
        ),
        "action": serializers.JSONField(
            help_text='{"type": "simulate", "request": <POST /api/simulations body>} or '
            '{"type": "price_override", "request": <POST /api/model-price-overrides body>}'
        ),
        "decidedAtStake": decimal(allow_null=True, help_text="USD per month when dismissed"),
        "appliedAt": serializers.DateTimeField(allow_null=True),
        "appliedAtStake": decimal(allow_null=True, help_text="USD per month when applied"),
        "checks": serializers.JSONField(help_text="the checks 7 and 30 days after applying"),
        "window": _WINDOW,
        "firstSeenAt": serializers.DateTimeField(),
        "computedAt": serializers.DateTimeField(),
        "statusChangedAt": serializers.DateTimeField(),
    },
)
_RECOMMENDATION_LIST = page("RecommendationList", _RECOMMENDATION)
_RUN = inline_serializer(
    "RecommendationComputeRun",
    fields={
        "id": serializers.UUIDField(),
        "status": serializers.ChoiceField(choices=ComputeRun.Status.values),
        "stepsDone": serializers.IntegerField(),
        "stepsTotal": serializers.IntegerField(),
        "window": inline_serializer(
            "RecommendationRunWindow",
            fields={"from": serializers.DateTimeField(), "to": serializers.DateTimeField()},
        ),
        "findings": serializers.IntegerField(help_text="open findings after the run"),
        "moneyAtStakeMonthly": decimal(help_text="USD per month, the open findings'"),
        "error": serializers.CharField(allow_null=True),
        "requestedBy": serializers.CharField(),
        "createdAt": serializers.DateTimeField(),
        "startedAt": serializers.DateTimeField(allow_null=True),
        "finishedAt": serializers.DateTimeField(allow_null=True),
    },
)


# -- Findings ------------------------------------------------------------------------------------


def _list_filters(request: Request) -> tuple[str, list[str] | None]:
    wanted = request.query_params.get("status") or "open"
    if wanted not in STATUS_FILTERS:
        raise InvalidQuery(fields={"status": [f"One of {', '.join(STATUS_FILTERS)}."]})
    kind = request.query_params.get("kind")
    if kind is not None and kind not in Recommendation.Kind.values:
        raise InvalidQuery(fields={"kind": [f"One of {', '.join(Recommendation.Kind.values)}."]})
    return wanted, [kind] if kind else None


class RecommendationList(APIView):
    required_scopes = S.RECOMMENDATIONS_READ

    @extend_schema(
        summary="Findings ranked by money at stake per month (the largest first)",
        operation_id="recommendations_list",
        request=None,
        parameters=[
            OpenApiParameter(
                "status", str, enum=list(STATUS_FILTERS), description="default open; all: any"
            ),
            OpenApiParameter("kind", str, enum=list(Recommendation.Kind.values)),
            *PAGE_PARAMETERS,
        ],
        responses={200: _RECOMMENDATION_LIST},
    )
    def get(self, request: Request) -> Response:
        wanted, kinds = _list_filters(request)
        limit = page_limit(request)
        now = timezone.now()
        rows = recommendations_ranked(
            request_key(request).environment, now=now, status=wanted, kinds=kinds
        )
        found = recommendations_page(rows, limit=limit, cursor=request.query_params.get("cursor"))
        return Response(
            {
                "items": [render_recommendation(row, now) for row in found.items],
                "nextCursor": found.next_cursor,
                "hasMore": found.has_more,
            }
        )


class RecommendationDetail(APIView):
    required_scopes = S.RECOMMENDATIONS_READ

    @extend_schema(summary="One finding", request=None, responses={200: _RECOMMENDATION})
    def get(self, request: Request, recommendation_id: str) -> Response:
        row = recommendation_get(request_key(request).environment, recommendation_id)
        return Response(render_recommendation(row, timezone.now()))


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false`` only (DRF also takes 0, 1, "yes"...; the schema says boolean)."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only (DRF also takes "5" and true; the schema says integer)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int | Decimal):
            self.fail("invalid")
        if isinstance(data, Decimal):
            if not data.is_finite() or data != data.to_integral_value():
                self.fail("invalid")
            data = int(data)
        return super().to_internal_value(data)


class SnoozeInput(serializers.Serializer):
    days = StrictIntegerField(
        min_value=1, max_value=365, help_text="snoozed for this many days from now"
    )


def _decision_view(name: str, summary: str, act: Any, body: Any = None) -> type[APIView]:
    def post(self: APIView, request: Request, recommendation_id: str) -> Response:
        row = recommendation_get(request_key(request).environment, recommendation_id)
        extra: dict[str, Any] = {}
        if body is not None:
            given = body(data=request.data)
            given.is_valid(raise_exception=True)
            extra["until"] = timezone.now() + dt.timedelta(days=given.validated_data["days"])
        row = act(recommendation=row, **extra)
        return Response(render_recommendation(row, timezone.now()))

    post = extend_schema(summary=summary, request=body, responses={200: _RECOMMENDATION})(post)
    return type(name, (APIView,), {"required_scopes": S.RECOMMENDATIONS_WRITE, "post": post})


RecommendationDismiss = _decision_view(
    "RecommendationDismiss",
    "Dismiss a finding (it stays dismissed until its money at stake doubles)",
    recommendation_dismiss,
)
RecommendationSnooze = _decision_view(
    "RecommendationSnooze",
    "Snooze a finding for some days (or until its money at stake doubles)",
    recommendation_snooze,
    SnoozeInput,
)
RecommendationApply = _decision_view(
    "RecommendationApply",
    "Mark a finding applied (checked again after 7 and 30 days)",
    recommendation_apply,
)
RecommendationReopen = _decision_view(
    "RecommendationReopen", "Reopen a dismissed, snoozed or applied finding", recommendation_reopen
)


# -- Computing -----------------------------------------------------------------------------------


class ComputeInput(serializers.Serializer):
    windowDays = StrictIntegerField(
        min_value=1, max_value=400, required=False, help_text="the last N days (default 30)"
    )


class RecommendationCompute(APIView):
    required_scopes = S.RECOMMENDATIONS_READ

    @extend_schema(
        summary="Compute the findings now: answered at once for a small environment "
        "(200), else a background job (202) whose progress GET compute-runs/{id} shows",
        request=ComputeInput,
        responses={200: _RUN, 202: _RUN},
    )
    def post(self, request: Request) -> Response:
        body = ComputeInput(data=request.data)  # a JSON null is a 400, no body is {}
        body.is_valid(raise_exception=True)
        environment = request_key(request).environment
        now = timezone.now()
        days = body.validated_data.get("windowDays")
        start = now - dt.timedelta(days=days) if days else None
        run = compute_run_create(
            environment=environment,
            start=start,
            end=None,
            requested_by=f"key:{request_key(request).pk}",
            now=now,
        )
        events = ledger.usage_totals(
            environment, start=run.window_start, end=run.window_end
        ).event_count
        limit = getattr(settings, "RECOMMENDATIONS_SYNC_MAX_EVENTS", SYNC_MAX_EVENTS)
        if events > limit:
            compute_run_enqueue(run=run)
            return Response(render_run(run), status=status.HTTP_202_ACCEPTED)
        done = compute_run_execute(environment=environment, run_id=run.pk)
        assert done is not None
        return Response(render_run(done))


class ComputeRunDetail(APIView):
    required_scopes = S.RECOMMENDATIONS_READ

    @extend_schema(summary="A compute run and its progress", request=None, responses={200: _RUN})
    def get(self, request: Request, run_id: str) -> Response:
        return Response(render_run(compute_run_get(request_key(request).environment, run_id)))


# -- Comparable models -----------------------------------------------------------------------


def render_pair(pair: ComparablePair) -> dict[str, Any]:
    return {
        "id": pair.row.pk if pair.row is not None else None,
        "fromProvider": pair.from_provider,
        "fromModel": pair.from_model,
        "toProvider": pair.to_provider,
        "toModel": pair.to_model,
        "enabled": pair.enabled,
        "source": pair.source,
        "note": pair.note,
    }


_PAIR = inline_serializer(
    "RecommendationComparableModel",
    fields={
        "id": serializers.UUIDField(
            allow_null=True, help_text="the environment's own row; null: a shipped default"
        ),
        "fromProvider": serializers.CharField(),
        "fromModel": serializers.CharField(),
        "toProvider": serializers.CharField(),
        "toModel": serializers.CharField(),
        "enabled": serializers.BooleanField(),
        "source": serializers.ChoiceField(choices=["default", "environment"]),
        "note": serializers.CharField(),
    },
)
_PAIRS = inline_serializer("RecommendationComparableModelList", fields={"items": many(_PAIR)})


class PairInput(serializers.Serializer):
    fromProvider = StrictCharField(max_length=64)
    fromModel = StrictCharField(max_length=200)
    toProvider = StrictCharField(max_length=64)
    toModel = StrictCharField(max_length=200)
    enabled = StrictBooleanField(required=False, default=True)
    note = optional_text(300)


class ComparableModelList(APIView):
    required_scopes = {"GET": S.RECOMMENDATIONS_READ, "POST": S.RECOMMENDATIONS_WRITE}

    @extend_schema(
        summary="The comparable models the cheaper-model advice draws from",
        request=None,
        responses={200: _PAIRS},
    )
    def get(self, request: Request) -> Response:
        table = comparable_table(request_key(request).environment)
        return Response({"items": [render_pair(pair) for pair in table]})

    @extend_schema(
        summary="Add a pair of comparable models, or hide one (enabled: false)",
        request=PairInput,
        responses={200: _PAIR},
    )
    def post(self, request: Request) -> Response:
        body = PairInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        row = comparable_model_set(
            environment=request_key(request).environment,
            from_provider=data["fromProvider"],
            from_model=data["fromModel"],
            to_provider=data["toProvider"],
            to_model=data["toModel"],
            enabled=data["enabled"],
            note=data.get("note") or "",
        )
        table = comparable_table(request_key(request).environment)
        return Response(
            render_pair(next(p for p in table if p.row is not None and p.row.pk == row.pk))
        )


class ComparableModelDetail(APIView):
    required_scopes = S.RECOMMENDATIONS_WRITE

    @extend_schema(
        summary="Remove the environment's own pair (a hidden default shows again)",
        request=None,
        responses={204: None},
    )
    def delete(self, request: Request, row_id: str) -> Response:
        row = comparable_model_get(request_key(request).environment, row_id)
        comparable_model_delete(row=row)
        return Response(status=status.HTTP_204_NO_CONTENT)
