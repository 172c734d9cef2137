"""Shared pieces of the OpenAPI descriptions (drf-spectacular) of the API views.

The views are plain ``APIView``s that parse and render by hand, so each describes
its answers with ``inline_serializer`` components named after its app; these are the
shapes every app's lists share, and ``TansoAutoSchema`` adds the error answers every
operation shares (so no view repeats them).
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.drainage import has_override
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiParameter, extend_schema_field, inline_serializer
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


def limit_parameter(default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> OpenApiParameter:
    """``?limit=`` as ``apps.core.api.pagination.page_limit`` enforces it."""
    return OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
        description=f"Page size, 1-{maximum} (default {default}).",
    )


CURSOR_PARAMETER = OpenApiParameter(
    "cursor",
    str,
    description=(
        "Opaque: the nextCursor of the previous page, unchanged. Any other value is a 400 "
        "validation_failed naming `cursor`."
    ),
)
PAGE_PARAMETERS = [limit_parameter(), CURSOR_PARAMETER]

# An instant in a query string: ISO 8601 in the years the read API accepts (1970-8999
# stated here; apps.analytics.params also takes 9000 and plain dates).
INSTANT_SCHEMA: dict[str, Any] = {
    "type": "string",
    "format": "date-time",
    "pattern": "^(?:19[7-9][0-9]|[2-8][0-9]{3})-",
}
# An optional query parameter given empty (``?to=``) means "not given".
EMPTY_SCHEMA: dict[str, Any] = {"type": "string", "maxLength": 0}
OPTIONAL_INSTANT_SCHEMA: dict[str, Any] = {"oneOf": [INSTANT_SCHEMA, EMPTY_SCHEMA]}
OPTIONAL_UUID_SCHEMA: dict[str, Any] = {
    "oneOf": [{"type": "string", "format": "uuid"}, EMPTY_SCHEMA]
}


# -- the error answers every operation shares --------------------------------------------

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error (apps.core.api.exceptions): one envelope, any status.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "machine code, e.g. validation_failed"},
                "message": {"type": "string"},
                "fields": {
                    "type": "object",
                    "description": "validation_failed: parameter or field -> its problems",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
                "requestId": {"type": "string"},
            },
            # Some codes add their own members (requiredScope, jobId, ...).
            "additionalProperties": True,
            "required": ["code", "message", "requestId"],
        }
    },
    "required": ["error"],
}

_ERROR_DESCRIPTIONS = {
    "400": "validation_failed (with fields) or malformed_body",
    "401": "unauthorized: a missing, unknown, revoked or expired key",
    "403": "scope_denied (naming requiredScope), forbidden or customer_mismatch",
    "404": "not_found: nothing by that id in the key's environment",
    "409": "conflict, or idempotency_conflict / idempotency_in_progress (Idempotency-Key)",
    "413": "payload_too_large",
    "429": "rate_limited, with Retry-After",
}
_MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


def decimal_pattern(
    whole: int | None,
    places: int | None,
    *,
    minimum: Any = None,
    maximum: Any = None,
    empty: bool = False,
) -> str:
    """The decimal strings a field accepts: ASCII digits, at least one; no sign when the
    minimum is 0, and not zero either when it is above 0; at most ``maximum`` when that
    is a power of ten (100 for a percentage); ``empty``: "" too (it means null)."""
    sign = "" if minimum is not None and minimum >= 0 else "-?"
    nonzero = "(?=.*[1-9])" if minimum is not None and minimum > 0 else ""
    top = None
    if maximum is not None and maximum >= 1 and str(int(maximum)).rstrip("0") == "1":
        top = len(str(int(maximum))) - 1  # maximum == 10**top
        whole = min(whole, top) if whole is not None else top
    digits = "[0-9]+" if whole is None else f"[0-9]{{1,{whole}}}" if whole else "0"
    fraction = r"(?:\.[0-9]+)?" if places is None else rf"(?:\.[0-9]{{1,{places}}})?"
    number = f"{sign}{digits}{fraction}" if places != 0 else f"{sign}{digits}"
    if top:
        zeros = "+" if places is None else f"{{1,{places}}}"
        number = rf"{number}|1{'0' * top}(?:\.0{zeros})?" if places else f"{number}|1{'0' * top}"
    body = f"{nonzero}(?:{number})"
    return f"^(?:{body})?$" if empty else f"^{body}$"


def documented[F: serializers.Field](field: F, schema: dict[str, Any]) -> F:
    """``field`` described in the OpenAPI schema as ``schema``: for fields whose own
    validation (a ``validate_<name>``, a JSONField read by hand) says what they accept.

    The description goes on a subclass made for this field: DRF copies declared fields
    by calling their class again, which would drop anything set on the instance."""
    cls = type(field)
    field.__class__ = extend_schema_field(schema)(type(cls.__name__, (cls,), {}))
    return field


class TansoAutoSchema(AutoSchema):
    """Every operation's error answers, decided once from the view instead of repeated in
    each ``extend_schema``: each error status the server can give this operation is listed
    with the error envelope as its body (an explicit description of a view is kept).

    Request fields are described as their validation accepts them: a decimal string holds
    at least one digit (drf-spectacular's pattern also matches "" and "-"), a list that
    may not be empty has ``minItems: 1``."""

    def _map_serializer_field(
        self, field: Any, direction: Any, bypass_extensions: bool = False
    ) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_serializer_field(field, direction, bypass_extensions)
        if not isinstance(schema, dict):
            return schema
        if isinstance(field, serializers.DecimalField) and has_override(field, "field"):
            pass  # described by hand (documented)
        elif isinstance(field, serializers.DecimalField) and direction == "response":
            # Answers hold sums: their digits are not bounded by any one stored amount.
            schema["pattern"] = decimal_pattern(None, None)
        elif isinstance(field, serializers.DecimalField):
            bounded = field.max_digits is not None
            schema["pattern"] = decimal_pattern(
                field.max_whole_digits if bounded else None,
                field.decimal_places,
                minimum=field.min_value,
                maximum=field.max_value,
                # DRF reads "" as null in a nullable DecimalField; the hand-parsed fields
                # documented with apps.core.api.schema.decimal (unbounded) refuse it.
                empty=bounded and field.allow_null,
            )
        if (
            schema.get("type") == "array"
            and getattr(field, "allow_empty", True) is False
            and not schema.get("minItems")
        ):
            schema["minItems"] = 1
        return schema

    def _map_basic_serializer(self, serializer: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_basic_serializer(serializer, direction)
        if getattr(serializer, "refuses_unknown_fields", False) and direction == "request":
            schema["additionalProperties"] = False
        return schema

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        error = ResolvedComponent(
            name="Error", type=ResolvedComponent.SCHEMA, object="Error", schema=ERROR_SCHEMA
        )
        self.registry.register_on_missing(error)
        responses: dict[str, Any] = operation["responses"]
        for code in self._error_codes(operation):
            answer = responses.setdefault(code, {"description": _ERROR_DESCRIPTIONS[code]})
            answer.setdefault("content", {"application/json": {"schema": error.ref}})
        for code, answer in responses.items():
            # Explicit error answers described without a body get the envelope too.
            if code >= "400" and "content" not in answer:
                answer["content"] = {"application/json": {"schema": error.ref}}
        if self._is_public():
            operation["security"] = []  # no key needed: say so, or the global one applies
        return operation

    def _is_public(self) -> bool:
        return bool(getattr(self.view, "public", False)) or not self.view.get_authenticators()

    def _error_codes(self, operation: dict[str, Any]) -> list[str]:
        codes = []
        takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
        if takes_input or self.method in _MUTATING:
            codes.append("400")  # bad parameters or body, a malformed Idempotency-Key
        if not self._is_public():
            codes += ["401", "403", "429"]  # key, scope (or a customer key), rate limit
        if re.search(r"{\w+}", self.path) or "requestBody" in operation:
            codes.append("404")  # the path's object, or one the body names
        if self.method in _MUTATING:
            codes.append("409")  # Idempotency-Key reused with another body, or in flight
        if "requestBody" in operation:
            codes.append("413")
        return codes
