"""The request body of ``POST /api/simulations`` as OpenAPI describes it (the view parses
it by hand, :mod:`apps.simulations.request`; this says what that parser accepts)."""

from __future__ import annotations

from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from rest_framework import serializers

from apps.core.api.fields import StrictCharField
from apps.core.api.schema import documented

from .request import (
    BANDS,
    MAX_CHANGES,
    MAX_CUSTOMERS,
    MAX_SCENARIOS,
    MONEY_PATTERN,
    PERCENT_PATTERN,
    POSITIVE_PATTERN,
)

_TEXT = {"type": "string", "minLength": 1, "maxLength": 255}
_MONEY = {"type": "string", "format": "decimal", "pattern": MONEY_PATTERN}
_POSITIVE = {"type": "string", "format": "decimal", "pattern": POSITIVE_PATTERN}
_PERCENT = {"type": "string", "format": "decimal", "pattern": PERCENT_PATTERN}


def _change(kind: str, required: dict[str, Any], optional: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"type": {"type": "string", "enum": [kind]}, **required, **optional},
        "required": ["type", *required],
        "additionalProperties": False,
    }


CHANGE_SCHEMAS = [
    _change("plan_base_price", {"planKey": _TEXT, "amount": _MONEY}, {}),
    _change(
        "pricing_rule",
        {
            "planKey": _TEXT,
            "featureKey": _TEXT,
            "rule": {"$ref": "#/components/schemas/PlansRuleInputRequest"},
        },
        {},
    ),
    _change("credit_weight", {"featureKey": _TEXT, "weight": _POSITIVE}, {"model": _TEXT}),
    _change("credit_price", {"creditModel": _TEXT, "unitPrice": _MONEY}, {}),
    _change(
        "model_swap",
        {"featureKey": _TEXT, "toModel": _TEXT},
        {"fromModel": _TEXT, "toProvider": _TEXT, "inputRatio": _MONEY, "outputRatio": _MONEY},
    ),
    _change(
        "provider_price",
        {
            "provider": _TEXT,
            "model": _TEXT,
            "inputCostPerMillion": _MONEY,
            "outputCostPerMillion": _MONEY,
        },
        {"cacheReadCostPerMillion": _MONEY, "cacheWriteCostPerMillion": _MONEY},
    ),
    _change("discount", {"percent": _PERCENT}, {"planKey": _TEXT}),
    _change("move_plan", {"fromPlanKey": _TEXT, "toPlanKey": _TEXT}, {}),
]

WINDOW_SCHEMA = {
    "type": "object",
    "properties": {
        "from": {"type": "string", "format": "date-time"},
        "to": {"type": "string", "format": "date-time"},
    },
    "additionalProperties": False,
    "description": "The baseline [from, to), at most 366 days; default the last 30 days",
}
COHORT_SCHEMA = {
    "oneOf": [
        {
            "type": "object",
            "properties": {"type": {"type": "string", "enum": ["all"]}},
            "required": ["type"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"type": {"type": "string", "enum": ["plan"]}, "planKey": _TEXT},
            "required": ["type", "planKey"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": ["customers"]},
                "customerReferenceIds": {
                    "type": "array",
                    "items": _TEXT,
                    "minItems": 1,
                    "maxItems": MAX_CUSTOMERS,
                },
            },
            "required": ["type", "customerReferenceIds"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": ["band"]},
                "band": {"type": "string", "enum": list(BANDS)},
            },
            "required": ["type", "band"],
            "additionalProperties": False,
        },
    ]
}
SCENARIOS_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "maxItems": MAX_SCENARIOS,
    "items": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 255},
            "changes": {
                "type": "array",
                "maxItems": MAX_CHANGES,
                "items": {"oneOf": CHANGE_SCHEMAS},
            },
        },
        "additionalProperties": False,
    },
}


def _json(schema: dict[str, Any], *, required: bool = False) -> serializers.JSONField:
    return documented(serializers.JSONField(required=required, encoder=DjangoJSONEncoder), schema)


class SimulationRequestInput(serializers.Serializer):
    """What ``POST /api/simulations`` takes (docs/simulations.md)."""

    refuses_unknown_fields = True  # parse_request refuses them; the schema says so
    name = StrictCharField(max_length=255, required=False, allow_blank=True)
    window = _json(WINDOW_SCHEMA)
    cohort = _json(COHORT_SCHEMA)
    billShockThresholdPct = _json(_MONEY)
    scenarios = _json(SCENARIOS_SCHEMA, required=True)


class SimulationPreviewInput(SimulationRequestInput):
    """The same body and the customer to preview."""

    customerReferenceId = StrictCharField(max_length=255)
