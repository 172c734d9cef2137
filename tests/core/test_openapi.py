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


def _operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "responses" in operation
    ]


def test_every_operation_documents_its_errors_with_the_envelope():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert set(error["properties"]["error"]["required"]) == {"code", "message", "requestId"}
    for method, path, operation in _operations(schema):
        responses = operation["responses"]
        codes = set(responses)
        if path == "/api/signup":
            assert operation["security"] == []  # no key
            assert {"400", "409", "413", "429"} <= codes
        else:
            assert operation["security"] == [{"bearer": []}, {"apiKey": []}], path
            assert {"401", "403", "429"} <= codes, (method, path)
        if "{" in path:
            assert "404" in codes, (method, path)
        if method in {"POST", "PUT", "PATCH", "DELETE"}:
            assert {"400", "409"} <= codes, (method, path)
        if "requestBody" in operation:
            assert "413" in codes, (method, path)
        for code, answer in responses.items():
            if code >= "400":
                body = answer["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/Error"}, (method, path, code)


def test_page_parameters_state_their_bounds():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    limits = 0
    for method, path, operation in _operations(schema):
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "limit":
                limits += 1
                bounds = parameter["schema"]
                assert bounds["type"] == "integer", (method, path)
                assert (bounds["minimum"], bounds["maximum"]) == (1, 200), (method, path)
            if parameter["name"] == "cursor":
                assert parameter["schema"]["type"] == "string"
                assert "Opaque" in parameter["description"], (method, path)
    assert limits >= 20
