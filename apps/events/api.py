"""Event ingestion API: one event (Platform client API) and batches (Observe).

Validation is hand-written (``validation.py``) because these are the hot
paths; the serializers below only document the shapes in the OpenAPI schema.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.audit import Actor
from apps.analytics.params import parse_instant
from apps.apikeys import scopes as S
from apps.apikeys.authentication import request_key
from apps.apikeys.idempotency import APIView
from apps.core.api.pagination import paginate_newest_first
from apps.core.api.schema import (
    OPTIONAL_INSTANT_SCHEMA,
    PAGE_PARAMETERS,
    decimal_pattern,
    documented,
    page,
)
from apps.core.errors import InvalidQuery, PayloadTooLarge, ValidationFailed
from apps.core.tenancy import scoped

from .ingest import MAX_BATCH, event_record, events_ingest
from .models import RecostRun
from .rendering import render_recorded
from .services import events_recost_request
from .validation import MAX_DURATION_MS, MAX_TOKENS

UNAVAILABLE = OpenApiResponse(
    description=(
        "unavailable (with Retry-After): PostgreSQL cannot be reached; nothing of the"
        " request was acknowledged, so retrying with the same idempotency keys is safe"
    )
)


# --- Schema documentation only ---------------------------------------------------------


# An amount as apps/events/validation.py reads it: a decimal string or a number, at
# least 0 and below 10^12 (rounded to 12 places).
_AMOUNT = {
    "oneOf": [
        {"type": "string", "format": "decimal", "pattern": decimal_pattern(12, 12, minimum=0)},
        {"type": "number", "minimum": 0, "maximum": 10**12, "exclusiveMaximum": True},
    ],
    "nullable": True,
}


class _CostInputDoc(serializers.Serializer):
    # Optional fields: null means "not given" (apps/events/validation.py).
    model = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, help_text="e.g. gpt-4o; drives auto-cost"
    )
    modelProvider = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, help_text="inferred when absent"
    )
    inputTokens = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=MAX_TOKENS,
        help_text="whole prompt, cached tokens included",
    )
    outputTokens = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=MAX_TOKENS
    )
    cacheReadTokens = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=MAX_TOKENS
    )
    cacheWriteTokens = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=MAX_TOKENS
    )
    reasoningTokens = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=MAX_TOKENS,
        help_text="part of outputTokens",
    )


class _EventFieldsDoc(serializers.Serializer):
    eventName = serializers.CharField(max_length=255)
    # An integer id is taken as its decimal text (validation._integral_reference).
    customerReferenceId = documented(
        serializers.CharField(max_length=255),
        {
            "oneOf": [
                {"type": "string", "minLength": 1, "maxLength": 255},
                {"type": "integer"},
            ],
            "description": "your customer's id: text, or an integer (stored as its digits;"
            " at most 255 of them)",
        },
    )
    featureKey = serializers.CharField(max_length=128)
    # Parsed by apps/events/validation.py: "" is not a number there (DRF's DecimalField
    # would read it as null), so each is described as exactly what it takes.
    usageUnits = documented(
        serializers.DecimalField(max_digits=24, decimal_places=12, required=False),
        {**_AMOUNT, "description": "default 1"},
    )
    costAmount = documented(
        serializers.DecimalField(max_digits=24, decimal_places=12, required=False),
        {**_AMOUNT, "description": "USD (dollars, not cents); wins over any computed cost"},
    )
    revenueAmount = documented(
        serializers.DecimalField(max_digits=24, decimal_places=12, required=False),
        {**_AMOUNT, "description": "USD"},
    )
    occurredAt = documented(
        serializers.DateTimeField(required=False, allow_null=True),
        {
            "type": "string",
            "format": "date-time",
            "pattern": "^[2-9][0-9]{3}-",  # not before 2000 (apps/events/validation.py)
            "nullable": True,
            "description": "ISO 8601, default now, at most 5 minutes ahead",
        },
    )
    durationMs = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=MAX_DURATION_MS
    )
    traceId = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, help_text="alias: flowId"
    )
    meta = serializers.DictField(
        required=False, allow_null=True, help_text="free JSON object, at most 16 KB"
    )


class ClientEventInputDoc(_EventFieldsDoc):
    eventIdempotencyKey = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="generated when absent; the X-Idempotency-Key header overrides it",
    )
    costInput = _CostInputDoc(required=False, allow_null=True)


class ObserveEventInputDoc(_EventFieldsDoc, _CostInputDoc):
    idempotencyKey = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="dedupe on retry; empty: generated",
    )


class CostEstimateDoc(serializers.Serializer):
    basis = serializers.ChoiceField(choices=["usage_units_as_input_tokens"])
    inputTokens = serializers.IntegerField(help_text="the usageUnits priced as input tokens")
    exactWith = serializers.CharField(help_text="what to send for an exact cost")


class EventOutputDoc(serializers.Serializer):
    id = serializers.CharField()
    eventIdempotencyKey = serializers.CharField()
    eventName = serializers.CharField()
    customerReferenceId = serializers.CharField()
    featureKey = serializers.CharField()
    occurredAt = serializers.DateTimeField()
    model = serializers.CharField(allow_null=True)
    modelProvider = serializers.CharField(allow_null=True)
    usageUnits = serializers.DecimalField(max_digits=24, decimal_places=12)
    inputTokens = serializers.IntegerField(allow_null=True)
    outputTokens = serializers.IntegerField(allow_null=True)
    cacheReadTokens = serializers.IntegerField(allow_null=True)
    cacheWriteTokens = serializers.IntegerField(allow_null=True)
    reasoningTokens = serializers.IntegerField(allow_null=True)
    costAmount = serializers.DecimalField(
        max_digits=24, decimal_places=12, allow_null=True, help_text="null when unpriced"
    )
    costSource = serializers.ChoiceField(
        choices=[
            "explicit",
            "override_rate",
            "override_discount",
            "catalog",
            "estimated",
            "unpriced",
        ]
    )
    unpricedReason = serializers.ChoiceField(
        choices=["unknown_model", "no_model", "no_token_counts"], allow_null=True
    )
    costEstimate = CostEstimateDoc(
        allow_null=True,
        help_text="costSource estimated: how the estimate was made and how to make it exact",
    )
    priceVersionId = serializers.IntegerField(allow_null=True)
    revenueAmount = serializers.DecimalField(max_digits=24, decimal_places=12, allow_null=True)
    margin = serializers.DecimalField(max_digits=24, decimal_places=12, allow_null=True)
    durationMs = serializers.IntegerField(allow_null=True)
    traceId = serializers.CharField(allow_null=True)
    meta = serializers.DictField()


class BatchInputDoc(serializers.Serializer):
    events = ObserveEventInputDoc(
        # More than MAX_BATCH is a 413, not a 400: stated in words, not as maxItems.
        many=True,
        allow_empty=False,
        help_text=f"1 to {MAX_BATCH} events (more: 413)",
    )


class _BatchItemDoc(serializers.Serializer):
    index = serializers.IntegerField(help_text="position in the request's events list")
    id = serializers.CharField(allow_null=True, help_text="null for a duplicate")
    idempotencyKey = serializers.CharField(help_text="the one sent, or the one generated")
    status = serializers.ChoiceField(choices=["accepted", "duplicate"])


class _BatchErrorDoc(serializers.Serializer):
    index = serializers.IntegerField()

    def get_fields(self) -> dict[str, serializers.Field]:
        # Not a class-body field: to mypy, "fields" there would override Serializer.fields.
        return {
            **super().get_fields(),
            "fields": serializers.DictField(
                child=serializers.ListField(child=serializers.CharField())
            ),
        }


class BatchOutputDoc(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    events = _BatchItemDoc(many=True, help_text="accepted and duplicate items, in order")

    def get_fields(self) -> dict[str, serializers.Field]:
        # Not a class-body field: to mypy, "errors" there would override Serializer.errors.
        return {
            **super().get_fields(),
            "errors": _BatchErrorDoc(many=True, help_text="rejected items with their field errors"),
        }


# --- Views ------------------------------------------------------------------------------


class ClientEventCreate(APIView):
    # An event carries the company's cost and revenue: customer keys (ck_, held by end
    # customers) are refused, as on every write to the books (HasScope).
    required_scopes = S.EVENTS_WRITE
    # validation.py bounds meta's depth and refuses NUL and lone surrogates field by field
    # (core.api.parsers).
    validates_json_itself = True

    @extend_schema(
        summary="Record one event",
        request=ClientEventInputDoc,
        responses={
            201: EventOutputDoc,
            400: OpenApiResponse(description="validation_failed, with field errors"),
            409: OpenApiResponse(description="duplicate_event: this key was already recorded"),
            503: UNAVAILABLE,
        },
    )
    def post(self, request: Request) -> Response:
        header_key = request.headers.get("X-Idempotency-Key")
        key = request_key(request)
        recorded = event_record(
            environment=key.environment,
            body=request.data,
            api_key_id=key.pk,
            idempotency_key=header_key if header_key else None,
        )
        return Response(render_recorded(recorded), status=status.HTTP_201_CREATED)


class EventsIngest(APIView):
    required_scopes = S.EVENTS_WRITE
    # Item by item, in validation.py: one bad item is rejected, not the batch.
    validates_json_itself = True

    @extend_schema(
        summary="Record a batch of events (1 to 1000)",
        description=(
            "Each item is accepted, a duplicate (its idempotencyKey is already recorded, or "
            "repeats an earlier item of this batch) or rejected with field errors; a rejected "
            "item does not stop the others. 200 when no item was rejected, 207 when some "
            "were, 400 `validation_failed` (with `fields` keyed `events.<index>.<field>` and "
            "the same `errors` list) when every item was rejected. More than 1000 events: "
            "413 `payload_too_large`, and so is a body over 20 MiB."
        ),
        request=BatchInputDoc,
        responses={
            200: BatchOutputDoc,
            207: BatchOutputDoc,
            400: OpenApiResponse(description="validation_failed"),
            413: OpenApiResponse(description="payload_too_large"),
            503: UNAVAILABLE,
        },
    )
    def post(self, request: Request) -> Response:
        data: Any = request.data
        items = data.get("events") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise ValidationFailed(fields={"events": ["Must be a list of event objects."]})
        if not items:
            raise ValidationFailed(fields={"events": ["At least one event is required."]})
        if len(items) > MAX_BATCH:
            raise PayloadTooLarge(f"A batch may hold at most {MAX_BATCH} events.")
        key = request_key(request)
        result = events_ingest(environment=key.environment, items=items, api_key_id=key.pk)
        body = {
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "rejected": result.rejected,
            "events": [
                {**item, "id": str(item["id"]) if item["id"] is not None else None}
                for item in result.events
            ],
            "errors": result.errors,
        }
        if result.rejected and not result.events:
            fields = {
                f"events.{error['index']}.{name}": messages
                for error in result.errors
                for name, messages in error["fields"].items()
            }
            raise ValidationFailed(
                "No event in the batch is valid.", fields=fields, extra={"errors": result.errors}
            )
        return Response(body, status=207 if result.rejected else status.HTTP_200_OK)


# --- Re-costing (the dashboard's "Re-cost unpriced events") ------------------------------


def render_recost_run(run: RecostRun) -> dict[str, Any]:
    return {
        "id": str(run.pk),
        "status": run.status,
        "actor": run.actor,
        "eventsExamined": run.events_examined,
        "eventsChanged": run.events_changed,
        "eventsNewlyPriced": run.events_newly_priced,
        "costChange": run.cost_change_usd,
        "error": run.error,
        "startedAt": run.started_at,
        "finishedAt": run.finished_at,
    }


_RECOST_RUN = inline_serializer(
    "EventsRecostRun",
    fields={
        "id": serializers.CharField(),
        "status": serializers.ChoiceField(choices=RecostRun.Status.values),
        "actor": serializers.CharField(help_text="who asked: api:<key id>, dashboard:<email>"),
        "eventsExamined": serializers.IntegerField(),
        "eventsChanged": serializers.IntegerField(),
        "eventsNewlyPriced": serializers.IntegerField(),
        "costChange": serializers.DecimalField(
            max_digits=24, decimal_places=12, help_text="USD, the sum of cost changes"
        ),
        "error": serializers.CharField(),
        "startedAt": serializers.DateTimeField(),
        "finishedAt": serializers.DateTimeField(allow_null=True),
    },
)
_RECOST_QUEUED = inline_serializer(
    "EventsRecostQueued",
    fields={
        "status": serializers.ChoiceField(choices=["queued"]),
        "requestedAt": serializers.DateTimeField(
            help_text="pass as ?since= to GET /api/events/recost-runs to follow the run"
        ),
    },
)


class EventsRecost(APIView):
    """The same service as the dashboard's button: audited, enqueued after the commit."""

    required_scopes = S.USAGE_WRITE

    @extend_schema(
        summary="Re-price the environment's unpriced events in the background",
        request=None,
        responses={202: _RECOST_QUEUED},
    )
    def post(self, request: Request) -> Response:
        key = request_key(request)
        requested_at = timezone.now()
        events_recost_request(
            environment=key.environment, actor=Actor.from_request(request), label=f"api:{key.pk}"
        )
        return Response(
            {"status": "queued", "requestedAt": requested_at}, status=status.HTTP_202_ACCEPTED
        )


class RecostRunList(APIView):
    required_scopes = S.USAGE_READ

    @extend_schema(
        summary="Re-costing runs of the environment, newest first",
        request=None,
        parameters=[
            OpenApiParameter(
                "since",
                OPTIONAL_INSTANT_SCHEMA,
                description="only runs started at or after this instant (ISO 8601, UTC if naive)",
            ),
            *PAGE_PARAMETERS,
        ],
        responses={200: page("EventsRecostRuns", _RECOST_RUN)},
    )
    def get(self, request: Request) -> Response:
        environment = request_key(request).environment
        runs = scoped(RecostRun, environment)
        raw = request.query_params.get("since")
        if raw:
            try:
                since = parse_instant(raw) if "\x00" not in raw else None
            except (ValueError, OverflowError):
                since = None
            if since is None:
                raise InvalidQuery(fields={"since": ["An ISO 8601 date-time."]})
            runs = runs.filter(started_at__gte=since)
        return Response(
            paginate_newest_first(runs, request, render_recost_run, time_field="started_at")
        )
