"""The OpenAPI schema describes every API view: drf-spectacular generates it without an
error or a warning (an APIView without ``extend_schema`` is an "unable to guess
serializer" error and gets no request or response description; two GET views with the
same operationId are a warning)."""

from __future__ import annotations

from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator


def test_the_schema_is_generated_without_errors_or_warnings():
    GENERATOR_STATS.reset()
    try:
        schema = SchemaGenerator().get_schema(request=None, public=True)
        problems = sorted([*GENERATOR_STATS._error_cache, *GENERATOR_STATS._warn_cache])
    finally:
        GENERATOR_STATS.reset()
    assert problems == []
    operation_ids = [
        operation["operationId"]
        for path in schema["paths"].values()
        for operation in path.values()
        if isinstance(operation, dict) and "operationId" in operation
    ]
    assert len(operation_ids) == len(set(operation_ids))


def test_request_bodies_and_responses_are_described():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    check = schema["paths"]["/api/v1/client/entitlements/check"]["post"]
    body = check["requestBody"]["content"]["application/json"]["schema"]
    assert "$ref" in body or "properties" in body
    assert "200" in check["responses"]
