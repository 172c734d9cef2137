"""The Observe read API: overview, customers, features, models, events, traces.

Every view is a thin read: parse the query (``params.py``, a bad parameter is
a 400 ``validation_failed``), call one selector with the key's environment,
render. Tables and the event list also export CSV, streamed, with
``?format=csv`` (or ``Accept: text/csv``): the same rows as the JSON for the
same parameters, every page at once (``limit`` and ``cursor`` are ignored).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.http import Http404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.models import Environment
from apps.apikeys import scopes as S
from apps.apikeys.authentication import request_key
from apps.apikeys.idempotency import APIView
from apps.core.api.pagination import page_limit
from apps.core.api.renderers import DecimalJSONRenderer, dumps
from apps.core.api.schema import (
    OPTIONAL_INSTANT_SCHEMA,
    PAGE_PARAMETERS,
    decimal_pattern,
    documented,
)
from apps.core.errors import ValidationFailed
from apps.events.api import EventOutputDoc

from . import export
from .params import (
    TableQuery,
    Window,
    event_cursor,
    invalid_parameter,
    next_event_cursor,
    parse_bounds,
    parse_window,
    table_cursor,
    table_query,
    text_param,
)
from .prices import model_price_in_force
from .rendering import (
    render_customer_detail,
    render_customer_row,
    render_feature_row,
    render_model_row,
    render_overview,
    render_stored_event,
    render_trace,
    render_window,
)
from .selectors import (
    COST_SOURCES,
    SORTS,
    EventFilters,
    customer_detail,
    customer_table,
    event_names,
    events_matching,
    feature_table,
    model_table,
    newest_first,
    overview,
    target_margin,
    trace_get,
)
from .services import margin_settings_update

DEFAULT_SORT = "-cost"

# --- Rendering CSV ---------------------------------------------------------------------


class CSVRenderer(BaseRenderer):
    """Lets ``?format=csv`` / ``Accept: text/csv`` through content negotiation.

    The views stream CSV themselves; only error bodies reach this renderer, and
    :meth:`ReadView.handle_exception` switches those back to JSON first.
    """

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        return b"" if data is None else dumps(data)


class ReadView(APIView):
    renderer_classes = [DecimalJSONRenderer]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        try:
            return super().perform_content_negotiation(request, force)
        except Http404:
            # DRF answers an unknown ?format= with a 404; it is a bad parameter.
            formats = ", ".join(renderer.format for renderer in self.get_renderers())
            raise invalid_parameter(fields={"format": [f"One of {formats}."]}) from None

    def handle_exception(self, exc: Exception) -> Response:
        # Errors always leave as the JSON envelope, whatever format was asked for.
        self.request.accepted_renderer = DecimalJSONRenderer()
        self.request.accepted_media_type = DecimalJSONRenderer.media_type
        return super().handle_exception(exc)

    @property
    def environment(self) -> Environment:
        """The calling key's environment: every read is scoped to it."""
        return request_key(self.request).environment


class ExportableView(ReadView):
    renderer_classes = [DecimalJSONRenderer, CSVRenderer]

    def wants_csv(self, request: Request) -> bool:
        renderer = getattr(request, "accepted_renderer", None)
        return getattr(renderer, "format", None) == "csv"


# --- Schema documentation only ---------------------------------------------------------


def _money(help_text: str = "USD, a decimal string", **kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=38, decimal_places=12, help_text=help_text, **kwargs)


class _TotalsDoc(serializers.Serializer):
    events = serializers.IntegerField()
    cost = _money("USD; priced events only (see unpricedEvents)")
    revenue = _money()
    margin = _money("revenue - cost, USD")
    marginPct = serializers.DecimalField(
        max_digits=40,
        decimal_places=2,
        allow_null=True,
        help_text="margin / revenue x 100, 2 dp; null without revenue",
    )
    unpricedEvents = serializers.IntegerField(help_text="events whose cost is unknown")
    estimatedCost = _money(
        "USD; the part of cost that is an estimate (events whose usageUnits were priced as "
        "input tokens: costSource estimated)"
    )
    usageUnits = serializers.DecimalField(max_digits=38, decimal_places=12)


class _WindowDoc(serializers.Serializer):
    # "from" is a Python keyword: set through the class namespace.
    locals()["from"] = serializers.DateTimeField(help_text="window start (inclusive)")
    to = serializers.DateTimeField(help_text="window end (exclusive)")


class _DayDoc(serializers.Serializer):
    date = serializers.DateField()
    events = serializers.IntegerField()
    cost = _money()
    revenue = _money()
    margin = _money()
    unpricedEvents = serializers.IntegerField()


class OverviewDoc(_WindowDoc, _TotalsDoc):
    customers = serializers.IntegerField(help_text="customers with events in the window")
    features = serializers.IntegerField()
    models = serializers.IntegerField(help_text="distinct (provider, model) pairs")
    daily = _DayDoc(many=True, help_text="every UTC day of the window, oldest first")


class _ModelSliceDoc(_TotalsDoc):
    model = serializers.CharField(allow_null=True)
    modelProvider = serializers.CharField(allow_null=True)


class CustomerRowDoc(_TotalsDoc):
    customerReferenceId = serializers.CharField()
    name = serializers.CharField(allow_null=True)
    email = serializers.CharField(allow_null=True)
    lastSeen = serializers.DateTimeField(help_text="latest event in the window")


class _FeatureBreakdownDoc(_TotalsDoc):
    featureKey = serializers.CharField()
    name = serializers.CharField(allow_null=True)
    models = _ModelSliceDoc(many=True)


class CustomerDetailDoc(_WindowDoc, CustomerRowDoc):
    unattributedRevenue = _money(
        "USD: revenue no feature below carries (e.g. a base fee in a window without usage;"
        " docs/revenue.md); `revenue` = the features' revenue + this"
    )
    lastSeen = serializers.DateTimeField(allow_null=True)
    features = _FeatureBreakdownDoc(many=True, help_text="by cost, models by cost within")


class FeatureRowDoc(_TotalsDoc):
    featureKey = serializers.CharField()
    name = serializers.CharField(allow_null=True)
    lastSeen = serializers.DateTimeField()
    models = _ModelSliceDoc(many=True)


class _LatencyDoc(serializers.Serializer):
    avg = serializers.FloatField(allow_null=True)
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)


class _PriceDoc(serializers.Serializer):
    catalog = serializers.DictField(
        allow_null=True, help_text="the catalog version in force, as GET /api/model-prices"
    )
    discountPercent = serializers.DecimalField(max_digits=7, decimal_places=4, allow_null=True)
    customRates = serializers.DictField(allow_null=True, help_text="negotiated USD per MTok")

    def get_fields(self) -> dict[str, serializers.Field]:
        # Not a class-body field: to mypy, "source" there would override Field.source.
        return {
            "source": serializers.ChoiceField(
                choices=["catalog", "override_rate", "override_discount"]
            ),
            **super().get_fields(),
        }


class ModelRowDoc(_TotalsDoc):
    model = serializers.CharField()
    modelProvider = serializers.CharField(allow_null=True)
    avgCostPerEvent = _money("cost / priced events, USD", allow_null=True)
    customers = serializers.IntegerField()
    features = serializers.IntegerField()
    inputTokens = serializers.IntegerField()
    outputTokens = serializers.IntegerField()
    latencyMs = _LatencyDoc(help_text="from durationMs of the window's events")
    lastSeen = serializers.DateTimeField()
    priceInForce = _PriceDoc(allow_null=True, help_text="null: unpriced")


class _TablePageDoc(_WindowDoc):
    nextCursor = serializers.CharField(allow_null=True)
    hasMore = serializers.BooleanField()


class CustomerPageDoc(_TablePageDoc):
    items = CustomerRowDoc(many=True)


class FeaturePageDoc(_TablePageDoc):
    items = FeatureRowDoc(many=True)


class ModelPageDoc(_TablePageDoc):
    items = ModelRowDoc(many=True)


class StoredEventDoc(EventOutputDoc):
    receivedAt = serializers.DateTimeField()
    flags = serializers.DictField()


class EventPageDoc(serializers.Serializer):
    items = StoredEventDoc(many=True)
    nextCursor = serializers.CharField(allow_null=True)
    hasMore = serializers.BooleanField()


class TraceDoc(serializers.Serializer):
    traceId = serializers.CharField()
    events = serializers.IntegerField(help_text="events in the trace (all of them)")
    cost = _money()
    revenue = _money()
    margin = _money()
    unpricedEvents = serializers.IntegerField()
    startedAt = serializers.DateTimeField(help_text="earliest occurredAt")
    endedAt = serializers.DateTimeField(help_text="latest occurredAt + durationMs")
    spanMs = serializers.IntegerField(help_text="endedAt - startedAt")
    durationMsSum = serializers.IntegerField(help_text="sum of durationMs")
    truncated = serializers.BooleanField(help_text="true when items lists only the first 1000")
    items = StoredEventDoc(many=True, help_text="in time order")


WINDOW_PARAMS = [
    OpenApiParameter(
        "from",
        OPTIONAL_INSTANT_SCHEMA,
        description="Window start, ISO 8601 date or datetime (UTC when no offset). "
        "Default: 30 days before `to`.",
    ),
    OpenApiParameter(
        "to",
        OPTIONAL_INSTANT_SCHEMA,
        description="Window end, exclusive. Default: the end of today (UTC). "
        "Windows are widened to whole hours and span at most 400 days.",
    ),
]
FORMAT_PARAM = OpenApiParameter(
    "format", str, enum=["json", "csv"], description="csv: stream every row as CSV"
)
TABLE_PARAMS = [
    *WINDOW_PARAMS,
    OpenApiParameter(
        "sort",
        str,
        enum=[*SORTS, *(f"-{name}" for name in SORTS)],
        description="'-' for descending; default -cost",
    ),
    *PAGE_PARAMETERS,
    FORMAT_PARAM,
]
ERRORS = {
    400: OpenApiResponse(description="validation_failed: a bad parameter or cursor"),
    403: OpenApiResponse(description="scope_denied"),
}


def _responses(
    doc: Any, *, csv: bool = False, not_found: bool = False, params: bool = True
) -> dict[Any, Any]:
    responses: dict[Any, Any] = {(200, "application/json"): doc}
    if csv:
        responses[(200, "text/csv")] = OpenApiTypes.STR
    responses.update(ERRORS)
    if not params:
        del responses[400]
    if not_found:
        responses[404] = OpenApiResponse(description="not_found")
    return responses


# --- Views -----------------------------------------------------------------------------


def _window(request: Request) -> Window:
    return parse_window(request.query_params).to_hours()


def _table(request: Request) -> tuple[TableQuery, int]:
    query = table_query(request.query_params, sorts=SORTS, default_sort=DEFAULT_SORT)
    return query, page_limit(request)


def _table_page(query: TableQuery, limit: int, items: list[Any], has_more: bool) -> dict[str, Any]:
    return {
        **render_window(query.window),
        "items": items,
        "nextCursor": table_cursor(query, query.offset + limit) if has_more else None,
        "hasMore": has_more,
    }


class Overview(ReadView):
    required_scopes = S.USAGE_READ

    @extend_schema(
        operation_id="analytics_overview",
        summary="Totals of a window: events, cost, revenue, margin, activity, daily series",
        parameters=WINDOW_PARAMS,
        responses=_responses(OverviewDoc),
    )
    def get(self, request: Request) -> Response:
        return Response(render_overview(overview(self.environment, _window(request))))


class CustomerList(ExportableView):
    required_scopes = S.CUSTOMERS_READ

    @extend_schema(
        operation_id="analytics_customers_list",
        summary="Customers active in a window, with cost, revenue and margin",
        parameters=[
            *TABLE_PARAMS,
            OpenApiParameter("search", str, description="words in reference, email or names"),
        ],
        responses=_responses(CustomerPageDoc, csv=True),
    )
    def get(self, request: Request) -> Any:
        query, limit = _table(request)
        if self.wants_csv(request):
            return export.customers_csv(self.environment, query)
        table = customer_table(self.environment, query, limit=limit)
        items = [render_customer_row(row) for row in table.rows]
        return Response(_table_page(query, limit, items, table.has_more))


class CustomerDetail(ReadView):
    required_scopes = S.CUSTOMERS_READ

    @extend_schema(
        operation_id="analytics_customer_retrieve",
        summary="One customer's totals with a feature x model breakdown",
        parameters=WINDOW_PARAMS,
        responses=_responses(CustomerDetailDoc, not_found=True),
    )
    def get(self, request: Request, reference_id: str) -> Response:
        detail = customer_detail(self.environment, reference_id, _window(request))
        return Response(render_customer_detail(detail))


class FeatureList(ExportableView):
    required_scopes = S.USAGE_READ

    @extend_schema(
        operation_id="analytics_features_list",
        summary="Features active in a window, each with its models",
        parameters=[
            *TABLE_PARAMS,
            OpenApiParameter("search", str, description="text in the key or name"),
        ],
        responses=_responses(FeaturePageDoc, csv=True),
    )
    def get(self, request: Request) -> Any:
        query, limit = _table(request)
        if self.wants_csv(request):
            return export.features_csv(self.environment, query)
        table = feature_table(self.environment, query, limit=limit)
        items = [render_feature_row(row) for row in table.rows]
        return Response(_table_page(query, limit, items, table.has_more))


class ModelList(ExportableView):
    required_scopes = S.MODELS_READ

    @extend_schema(
        operation_id="analytics_models_list",
        summary="Models seen in a window: cost, revenue, latency, price in force",
        parameters=[
            *TABLE_PARAMS,
            OpenApiParameter("search", str, description="text in the model, or exact provider"),
        ],
        responses=_responses(ModelPageDoc, csv=True),
    )
    def get(self, request: Request) -> Any:
        query, limit = _table(request)
        now = timezone.now()
        if self.wants_csv(request):
            return export.models_csv(self.environment, query, now=now)
        table = model_table(self.environment, query, limit=limit)
        items = [
            render_model_row(
                row, model_price_in_force(self.environment, row.provider, row.model, now)
            )
            for row in table.rows
        ]
        return Response(_table_page(query, limit, items, table.has_more))


def event_filters(request: Request) -> EventFilters:
    params = request.query_params
    cost_source = text_param(params, "costSource")
    if cost_source is not None and cost_source not in COST_SOURCES:
        raise invalid_parameter(fields={"costSource": [f"One of {', '.join(COST_SOURCES)}."]})
    window = parse_bounds(params)
    return EventFilters(
        window=window,
        customer_reference_id=text_param(params, "customerReferenceId"),
        feature_key=text_param(params, "featureKey"),
        model=text_param(params, "model"),
        provider=text_param(params, "modelProvider"),
        trace_id=text_param(params, "traceId"),
        event_name=text_param(params, "eventName"),
        cost_source=cost_source,
    )


class EventList(ExportableView):
    required_scopes = S.EVENTS_READ

    @extend_schema(
        operation_id="analytics_events_list",
        summary="Events, newest first, filtered",
        description=(
            "Filters are exact matches and combine with AND. `from` and `to` are independent "
            "optional bounds (to the second; no default window, no maximum span). The "
            "cursor is a keyset on (occurredAt, id): pages never shift when new events arrive."
        ),
        parameters=[
            OpenApiParameter(
                "from",
                OPTIONAL_INSTANT_SCHEMA,
                description="ISO 8601 date or datetime; events at or after",
            ),
            OpenApiParameter("to", OPTIONAL_INSTANT_SCHEMA, description="events strictly before"),
            OpenApiParameter("customerReferenceId", str),
            OpenApiParameter("featureKey", str),
            OpenApiParameter("model", str, description="the model name as recorded"),
            OpenApiParameter("modelProvider", str),
            OpenApiParameter("traceId", str),
            OpenApiParameter("eventName", str),
            OpenApiParameter("costSource", str, enum=list(COST_SOURCES)),
            *PAGE_PARAMETERS,
            FORMAT_PARAM,
        ],
        responses=_responses(EventPageDoc, csv=True),
    )
    def get(self, request: Request) -> Any:
        filters = event_filters(request)
        if self.wants_csv(request):
            return export.events_csv(self.environment, filters)
        limit = page_limit(request)
        before = event_cursor(request.query_params.get("cursor"))
        events = newest_first(
            events_matching(self.environment, filters), before=before, limit=limit + 1
        )
        has_more = len(events) > limit
        events = events[:limit]
        names = event_names(self.environment, events)
        last = events[-1] if events else None
        return Response(
            {
                "items": [render_stored_event(event, names) for event in events],
                "nextCursor": next_event_cursor(last.occurred_at, last.id)
                if has_more and last is not None
                else None,
                "hasMore": has_more,
            }
        )


class TraceDetail(ReadView):
    required_scopes = S.EVENTS_READ

    @extend_schema(
        operation_id="analytics_trace_retrieve",
        summary="A trace's events in time order, with total cost and duration",
        responses=_responses(TraceDoc, not_found=True, params=False),
    )
    def get(self, request: Request, trace_id: str) -> Response:
        return Response(render_trace(trace_get(self.environment, trace_id)))


# --- Settings: the target margin ---------------------------------------------------------


class MarginSettingsInput(serializers.Serializer):
    # A decimal string or a number (docs/api.md, "JSON"), 0-100 with at most 2 places.
    targetMarginPct = documented(
        serializers.DecimalField(
            max_digits=5,
            decimal_places=2,
            min_value=Decimal(0),
            max_value=Decimal(100),
            required=False,
            help_text="percent of revenue kept at or above which a row is healthy",
        ),
        {
            "oneOf": [
                {
                    "type": "string",
                    "format": "decimal",
                    "pattern": decimal_pattern(3, 2, minimum=0, maximum=100),
                },
                {"type": "number", "minimum": 0, "maximum": 100},
            ],
            "description": "percent (0-100, at most 2 decimal places) of revenue kept at or"
            " above which a row is healthy; absent: unchanged",
        },
    )


_MARGIN_SETTINGS = inline_serializer(
    "MarginSettings",
    fields={
        "targetMarginPct": serializers.DecimalField(
            max_digits=5,
            decimal_places=2,
            help_text="percent; bands: loss < 0 <= thin < target <= healthy (default 70)",
        )
    },
)


class MarginSettingsView(ReadView):
    required_scopes = {
        "GET": S.USAGE_READ,
        "HEAD": S.USAGE_READ,
        "PATCH": S.USAGE_WRITE,
    }

    @extend_schema(
        operation_id="analytics_settings_get",
        summary="The environment's target margin (the line between thin and healthy)",
        request=None,
        responses=_responses(_MARGIN_SETTINGS),
    )
    def get(self, request: Request) -> Response:
        return Response({"targetMarginPct": target_margin(self.environment)})

    @extend_schema(
        operation_id="analytics_settings_update",
        summary="Change the target margin",
        request=MarginSettingsInput,
        responses=_responses(_MARGIN_SETTINGS),
    )
    def patch(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationFailed(fields={"_body": ["Expected a JSON object."]})
        body = MarginSettingsInput(data=request.data)
        body.is_valid(raise_exception=True)
        if "targetMarginPct" not in body.validated_data:  # nothing to change
            return Response({"targetMarginPct": target_margin(self.environment)})
        saved = margin_settings_update(
            environment=self.environment,
            target_margin_pct=body.validated_data["targetMarginPct"],
        )
        return Response({"targetMarginPct": saved.target_margin_pct})
