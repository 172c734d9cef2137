"""Simulations API (docs/simulations.md): run, list, read, cancel, export, preview.

Writes need ``simulations.write``; reads ``simulations.read``. Every lookup is scoped to
the key's environment: another environment's or organization's simulation is a 404.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from django.http import HttpResponse
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

from apps.accounts.audit import Actor
from apps.apikeys import scopes as S
from apps.apikeys.authentication import environment_of
from apps.apikeys.idempotency import APIView
from apps.core.api.pagination import paginate_newest_first
from apps.core.api.renderers import DecimalJSONRenderer, dumps
from apps.core.api.schema import PAGE_PARAMETERS, page
from apps.core.errors import Conflict, ValidationFailed

from .models import Simulation
from .request import parse_request
from .schema import SimulationPreviewInput, SimulationRequestInput
from .selectors import simulation_get, simulations_list
from .services import simulation_cancel, simulation_create, simulation_preview

CUSTOMERS_SHOWN = 100

_SIMULATION = inline_serializer(
    "Simulation",
    fields={
        "id": serializers.UUIDField(),
        "name": serializers.CharField(),
        "status": serializers.ChoiceField(choices=Simulation.Status.values),
        "progress": serializers.IntegerField(help_text="Percent done, 0 to 100"),
        "inputs": serializers.DictField(help_text="The normalised request"),
        "inputsHash": serializers.CharField(help_text="SHA-256 of the inputs"),
        "resultHash": serializers.CharField(allow_null=True, help_text="SHA-256 of the result"),
        "error": serializers.CharField(allow_null=True),
        "createdAt": serializers.DateTimeField(),
        "startedAt": serializers.DateTimeField(allow_null=True),
        "finishedAt": serializers.DateTimeField(allow_null=True),
        "result": serializers.DictField(
            allow_null=True,
            help_text=(
                "window, reconciliation, scenarios (totals, distribution, customers up/down/"
                "unchanged, topWinners, topLosers, revenueAtRisk, flags) and customers (the "
                "first 100, largest change first; the list omits them)"
            ),
        ),
    },
)
_SIMULATION_ID = OpenApiParameter("simulation_id", str, OpenApiParameter.PATH)
_ERRORS = {
    400: OpenApiResponse(description="validation_failed: the body names the field"),
    403: OpenApiResponse(description="scope_denied"),
}


def _biggest_change(customer: dict[str, Any]) -> Any:
    changes = [abs(Decimal(s["change"])) for s in customer["scenarios"]] or [Decimal(0)]
    return (-max(changes), customer["customerReferenceId"])


def render(simulation: Simulation, *, customers: bool = True) -> dict[str, Any]:
    result = simulation.result
    if result is not None:
        shown = sorted(result["customers"], key=_biggest_change)[:CUSTOMERS_SHOWN]
        result = {**result, "customers": shown} if customers else {**result, "customers": []}
    return {
        "id": str(simulation.pk),
        "name": simulation.name,
        "status": simulation.status,
        "progress": simulation.progress,
        "inputs": simulation.inputs,
        "inputsHash": simulation.inputs_hash,
        "resultHash": simulation.result_hash or None,
        "error": simulation.error or None,
        "createdAt": simulation.created_at.isoformat(),
        "startedAt": simulation.started_at.isoformat() if simulation.started_at else None,
        "finishedAt": simulation.finished_at.isoformat() if simulation.finished_at else None,
        "result": result,
    }


class SimulationListCreate(APIView):
    required_scopes = {
        "GET": S.SIMULATIONS_READ,
        "HEAD": S.SIMULATIONS_READ,
        "POST": S.SIMULATIONS_WRITE,
    }
    renderer_classes = [DecimalJSONRenderer]

    @extend_schema(
        summary="The environment's simulations, newest first (results without customers)",
        operation_id="simulations_list",
        request=None,
        responses={200: page("SimulationPage", _SIMULATION), **_ERRORS},
        parameters=PAGE_PARAMETERS,
    )
    def get(self, request: Request) -> Response:
        rows = simulations_list(environment_of(request))
        return Response(
            paginate_newest_first(rows, request, lambda row: render(row, customers=False))
        )

    @extend_schema(
        summary="Run a simulation: answered at once for a small cohort (201), else a job (202)",
        operation_id="simulations_create",
        request=SimulationRequestInput,
        responses={201: _SIMULATION, 202: _SIMULATION, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        inputs = parse_request(request.data)
        simulation = simulation_create(
            environment=environment_of(request), inputs=inputs, actor=Actor.from_request(request)
        )
        status = 201 if simulation.status == Simulation.Status.COMPLETED else 202
        return Response(render(simulation), status=status)


class SimulationDetail(APIView):
    required_scopes = {"GET": S.SIMULATIONS_READ, "HEAD": S.SIMULATIONS_READ}
    renderer_classes = [DecimalJSONRenderer]

    @extend_schema(
        summary="A simulation: its status, progress and result",
        operation_id="simulations_get",
        request=None,
        responses={200: _SIMULATION, 404: OpenApiResponse(description="not_found"), **_ERRORS},
        parameters=[_SIMULATION_ID],
    )
    def get(self, request: Request, simulation_id: str) -> Response:
        return Response(render(simulation_get(environment_of(request), simulation_id)))


class SimulationCancel(APIView):
    required_scopes = S.SIMULATIONS_WRITE
    renderer_classes = [DecimalJSONRenderer]

    @extend_schema(
        summary="Cancel a queued or running simulation",
        operation_id="simulations_cancel",
        request=None,
        responses={
            200: _SIMULATION,
            404: OpenApiResponse(description="not_found"),
            409: OpenApiResponse(description="simulation_finished"),
            **_ERRORS,
        },
        parameters=[_SIMULATION_ID],
    )
    def post(self, request: Request, simulation_id: str) -> Response:
        simulation = simulation_get(environment_of(request), simulation_id)
        return Response(render(simulation_cancel(simulation=simulation)))


class CSVRenderer(BaseRenderer):
    """Lets ``Accept: text/csv`` through negotiation; the view writes the CSV itself."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        return b"" if data is None else dumps(data)


CSV_COLUMNS = [
    "customerReferenceId",
    "currency",
    "scenario",
    "billBefore",
    "billAfter",
    "change",
    "changePct",
    "costBefore",
    "costAfter",
    "marginBefore",
    "marginAfter",
    "marginPctBefore",
    "marginPctAfter",
    "creditsBefore",
    "creditsAfter",
    "poolExhaustedBefore",
    "poolExhaustedAfter",
    "blockedUnitsAfter",
    "bandBefore",
    "bandAfter",
    "flags",
]


def csv_rows(simulation: Simulation) -> list[list[Any]]:
    result = simulation.result or {"customers": [], "scenarios": []}
    names = [scenario["name"] for scenario in result["scenarios"]]
    rows = []
    for customer in result["customers"]:
        before = customer["before"]
        for name, after in zip(names, customer["scenarios"], strict=True):
            rows.append(
                [
                    customer["customerReferenceId"],
                    customer["currency"],
                    name,
                    before["bill"],
                    after["bill"],
                    after["change"],
                    after["changePct"],
                    before["cost"],
                    after["cost"],
                    before["margin"],
                    after["margin"],
                    before["marginPct"],
                    after["marginPct"],
                    before["creditsConsumed"],
                    after["creditsConsumed"],
                    before["poolExhaustedOn"],
                    after["poolExhaustedOn"],
                    after["blockedUnits"],
                    before["band"],
                    after["band"],
                    " ".join(after["flags"]),
                ]
            )
    return rows


class SimulationCustomersCSV(APIView):
    required_scopes = {"GET": S.SIMULATIONS_READ, "HEAD": S.SIMULATIONS_READ}
    renderer_classes = [CSVRenderer, DecimalJSONRenderer]

    @extend_schema(
        summary="Every customer before and after each scenario, as CSV (one row per scenario)",
        operation_id="simulations_customers_csv",
        request=None,
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            404: OpenApiResponse(description="not_found"),
            409: OpenApiResponse(description="simulation_not_finished"),
            403: OpenApiResponse(description="scope_denied"),
        },
        parameters=[_SIMULATION_ID],
    )
    def get(self, request: Request, simulation_id: str) -> HttpResponse:
        simulation = simulation_get(environment_of(request), simulation_id)
        if simulation.status != Simulation.Status.COMPLETED:
            raise Conflict("The simulation has no result yet.", code="simulation_not_finished")
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(csv_rows(simulation))
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="simulation-{simulation.pk}.csv"'
        return response

    def handle_exception(self, exc: Exception) -> Response:
        # Errors are JSON envelopes whatever the Accept header asked for.
        self.request.accepted_renderer = DecimalJSONRenderer()
        self.request.accepted_media_type = DecimalJSONRenderer.media_type
        return super().handle_exception(exc)


class SimulationPreview(APIView):
    required_scopes = S.SIMULATIONS_WRITE
    renderer_classes = [DecimalJSONRenderer]

    @extend_schema(
        summary="One customer's bill and margin before and after, computed at once (not stored)",
        operation_id="simulations_preview",
        request=SimulationPreviewInput,
        responses={200: OpenApiTypes.OBJECT, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, dict):
            raise ValidationFailed(fields={"_body": ["Expected a JSON object."]})
        reference = body.get("customerReferenceId")
        if not isinstance(reference, str) or not 0 < len(reference) <= 255:
            raise ValidationFailed(fields={"customerReferenceId": ["Required: a reference id."]})
        rest = {key: value for key, value in body.items() if key != "customerReferenceId"}
        inputs = parse_request(rest)
        return Response(simulation_preview(environment_of(request), inputs, reference))
