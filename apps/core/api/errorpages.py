"""404/500 for requests Django answers before DRF: JSON envelope under /api/, HTML elsewhere."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.defaults import page_not_found
from django.views.defaults import server_error as html_server_error

from .exceptions import error_body
from .renderers import dumps


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return HttpResponse(
            dumps(error_body("not_found", "No such endpoint.")),
            status=404,
            content_type="application/json",
        )
    return page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return HttpResponse(
            dumps(error_body("internal_error", "Internal error.")),
            status=500,
            content_type="application/json",
        )
    return html_server_error(request)
