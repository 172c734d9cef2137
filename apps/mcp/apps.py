from __future__ import annotations

from django.apps import AppConfig


class McpConfig(AppConfig):
    """The MCP server: agents reach the API's operations as tools (docs/mcp.md)."""

    name = "apps.mcp"
    label = "tanso_mcp"  # not "mcp": that is the SDK's import name
    verbose_name = "MCP server"
