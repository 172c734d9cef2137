from __future__ import annotations

from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """The LLM gateway: an OpenAI- and Anthropic-compatible metering proxy (docs/gateway.md)."""

    name = "apps.gateway"
    verbose_name = "LLM gateway"
