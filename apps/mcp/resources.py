"""Two read-only resources: the event's fields (what ``ingestEvent`` and
``POST /api/v1/client/events`` take) and the pricing models a plan's rule may use."""

from __future__ import annotations

import functools
import json
from typing import Any

from mcp.server.mcpserver import MCPServer

from apps.plans.models import PlanFeatureRule

EVENT_SCHEMA_URI = "tanso://schema/event"
PRICING_MODELS_URI = "tanso://pricing-models"

_PRICING_MODELS = {
    "included": "Access only: the feature is part of the plan, no usage charge.",
    "per_unit": "unitPrice per unit used in the period.",
    "graduated": "Tiers: each unit is priced by the tier it falls in (like tax brackets).",
    "volume": "Tiers: every unit is priced at the tier the period's total reaches.",
    "package": "packagePrice per started block of packageSize units.",
}


@functools.cache
def event_schema() -> dict[str, Any]:
    """The event input object of the API's OpenAPI schema (drf-spectacular, built once)."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    name = next(n for n in components if n.startswith("ClientEventInput"))
    return {"name": name, "schema": components[name]}


def pricing_models() -> dict[str, Any]:
    return {
        "models": [
            {"model": value, "label": label, "description": _PRICING_MODELS.get(value, "")}
            for value, label in PlanFeatureRule.Model.choices
        ],
        "resetIntervals": [
            {"interval": value, "label": label}
            for value, label in PlanFeatureRule.ResetInterval.choices
        ],
        "notes": (
            "A rule may cap usage (maxUsage, reset per resetInterval), price overage, and be "
            "backed by credits. Amounts are decimal strings in the plan's currency."
        ),
    }


def register(server: MCPServer) -> None:
    @server.resource(
        EVENT_SCHEMA_URI,
        name="event-schema",
        title="Event fields",
        description="The fields of an event (ingestEvent, POST /api/v1/client/events).",
        mime_type="application/json",
    )
    def _event_schema() -> str:
        return json.dumps(event_schema(), indent=2, default=str)

    @server.resource(
        PRICING_MODELS_URI,
        name="pricing-models",
        title="Pricing models",
        description="The pricing models and reset intervals a plan's feature rule may use.",
        mime_type="application/json",
    )
    def _pricing_models() -> str:
        return json.dumps(pricing_models(), indent=2)
