"""Serializer fields every client API shares: strict strings and the metadata object.

* :class:`StrictCharField` / :class:`StrictEmailField`: a number or a boolean is
  refused instead of being quietly turned into a string.
* :class:`MetadataField`: a JSON object of at most ``METADATA_MAX_BYTES``.
* :func:`optional_text`: an optional string where ``null`` means empty.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .renderers import dumps

METADATA_MAX_BYTES = 16 * 1024


class StrictCharMixin:
    """Refuse numbers and booleans instead of quietly turning them into strings."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")  # type: ignore[attr-defined]
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictCharField(StrictCharMixin, serializers.CharField):
    pass


class StrictEmailField(StrictCharMixin, serializers.EmailField):
    pass


def _plain_json(value: Any) -> Any:
    """Our JSON parser reads numbers as Decimal; jsonb stores numbers exactly anyway,
    so hand it ints and floats (the shortest float repr round-trips ``0.05`` as ``0.05``)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_json(item) for item in value]
    return value


@extend_schema_field(
    {"type": "object", "additionalProperties": True, "nullable": True},
)
class MetadataField(serializers.JSONField):
    """A JSON object of at most 16 KB (``null`` means an empty object)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        value = _plain_json(data)
        if len(dumps(value)) > METADATA_MAX_BYTES:
            raise serializers.ValidationError(f"At most {METADATA_MAX_BYTES} bytes of JSON.")
        return value


def optional_text(max_length: int, *, email: bool = False) -> serializers.CharField:
    """An optional string; ``null`` is accepted and means empty."""
    field = StrictEmailField if email else StrictCharField
    return field(max_length=max_length, required=False, allow_blank=True, allow_null=True)
