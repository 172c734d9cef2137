"""``{% load stripe_import %}{% stripe_import_panel %}``: the import panel, for the Stripe
settings page (needs ``request`` in the context, as every dashboard page has)."""

from __future__ import annotations

from typing import Any

from django import template
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from apps.stripe_import.views import PANEL, panel_context

register = template.Library()


@register.simple_tag(takes_context=True)
def stripe_import_panel(context: dict[str, Any]) -> SafeString:
    request = context["request"]
    if getattr(request, "environment", None) is None:
        return SafeString("")
    return render_to_string(PANEL, panel_context(request), request=request)
