"""404/500 for requests Django answers before DRF: JSON envelope under /api/, HTML elsewhere.

An error that says PostgreSQL or Redis is unreachable (``core.errors.is_outage``),
raised where no view handled it (a middleware, a page), is a 503 ``unavailable`` with
``Retry-After``, not a 500: the request can be retried once the store is back.
"""

from __future__ import annotations

import sys

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from django.views.defaults import page_not_found
from django.views.defaults import server_error as html_server_error

from apps.core.errors import Unavailable, is_outage

from .exceptions import error_body
from .renderers import dumps

_UNAVAILABLE_PAGE = (
    "<!doctype html><title>Briefly unavailable</title>"
    "<h1>Briefly unavailable</h1><p>Please try again in a few seconds.</p>"
)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return HttpResponse(
            dumps(error_body("not_found", "No such endpoint.")),
            status=404,
            content_type="application/json",
        )
    return page_not_found(request, exception)


def _answered_by_view(request: HttpRequest, exc: BaseException) -> HttpResponse | None:
    """The answer of a view that has one for an outage (``outage_answer``: the entitlement
    checks, which fail closed with 200 ``allowed: false`` and never answer 5xx), when a
    middleware met the outage before the view ran. None: the generic 503."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return None
    answer = getattr(getattr(match.func, "view_class", None), "outage_answer", None)
    if answer is None:
        return None
    try:
        response: HttpResponse = answer(request, match.kwargs, exc)
    except Exception:  # the body is bad too, ...: the generic answer
        return None
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    # Django calls this handler inside its ``except`` block: the error is in flight.
    exc = sys.exc_info()[1]
    if exc is not None and is_outage(exc):
        answered = _answered_by_view(request, exc)
        if answered is not None:
            return answered
        error = Unavailable()
        if request.path.startswith("/api/"):
            response = HttpResponse(
                dumps(error_body(error.code, error.message)),
                status=error.status,
                content_type="application/json",
            )
        else:
            response = HttpResponse(_UNAVAILABLE_PAGE, status=error.status)
        response["Retry-After"] = str(error.retry_after)
        return response
    if request.path.startswith("/api/"):
        return HttpResponse(
            dumps(error_body("internal_error", "Internal error.")),
            status=500,
            content_type="application/json",
        )
    return html_server_error(request)
