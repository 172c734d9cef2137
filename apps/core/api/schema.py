"""Shared pieces of the OpenAPI descriptions (drf-spectacular) of the API views.

The views are plain ``APIView``s that parse and render by hand, so each describes
its answers with ``inline_serializer`` components named after its app; these are the
shapes every app's lists share.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers

from .pagination import DEFAULT_LIMIT, MAX_LIMIT


def decimal(help_text: str = "", **kwargs: Any) -> serializers.DecimalField:
    """An amount in an answer: a decimal string, its digits not bounded by the schema
    (the JSON is rendered by hand; the field only documents it)."""
    return serializers.DecimalField(
        max_digits=None, decimal_places=None, help_text=help_text, **kwargs
    )


def many(serializer: serializers.Serializer) -> serializers.ListSerializer:
    """The same component as a list (a fresh instance: DRF binds a field to one parent)."""
    listed = type(serializer).many_init()  # what ``many=True`` builds
    assert isinstance(listed, serializers.ListSerializer)
    return listed


def page(name: str, item: serializers.Serializer) -> serializers.Serializer:
    """The list envelope ``{items, nextCursor, hasMore}`` (``apps.core.api.pagination``)
    around ``item``'s shape."""
    return inline_serializer(
        name,
        fields={
            "items": many(item),
            "nextCursor": serializers.CharField(
                allow_null=True, help_text="Pass as ?cursor= for the next page; null at the end."
            ),
            "hasMore": serializers.BooleanField(),
        },
    )


PAGE_PARAMETERS = [
    OpenApiParameter(
        "limit", int, description=f"Page size, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT})."
    ),
    OpenApiParameter("cursor", str, description="nextCursor of the previous page."),
]
