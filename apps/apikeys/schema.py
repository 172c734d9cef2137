"""OpenAPI: how drf-spectacular describes our key authentication."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apps.apikeys.authentication.ApiKeyAuthentication"
    name = ["bearer", "apiKey"]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        # Either header authenticates: two alternatives, not one requirement naming both.
        return [{"bearer": []}, {"apiKey": []}]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        return [
            {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"},
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        ]
