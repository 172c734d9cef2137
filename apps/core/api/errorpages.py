"""Error answers Django makes before or around DRF: the JSON envelope under /api/, the
product's pages elsewhere (templates/400.html, 404.html, 500.html).

An error that says PostgreSQL or Redis is unreachable (``core.errors.is_outage``),
raised where no view handled it (a middleware, a page), is a 503 ``unavailable`` with
``Retry-After``, not a 500: the request can be retried once the store is back.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

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
# The envelope's code for an error status that reached us without one.
_CODES = {
    400: ("bad_request", "The request could not be processed."),
    401: ("unauthorized", "A valid API key is required."),
    403: ("forbidden", "You do not have access."),
    404: ("not_found", "No such endpoint."),
    405: ("method_not_allowed", "This method is not allowed here."),
    406: ("not_acceptable", "No acceptable representation."),
    411: ("length_required", "A Content-Length header is required."),
    413: ("payload_too_large", "The request is too large."),
    415: ("unsupported_media_type", "Unsupported media type."),
    429: ("rate_limited", "Too many requests."),
    500: ("internal_error", "Internal error."),
}


def _envelope(status: int, code: str, message: str) -> HttpResponse:
    return HttpResponse(
        dumps(error_body(code, message)), status=status, content_type="application/json"
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return _envelope(404, "not_found", "No such endpoint.")
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
            response = _envelope(error.status, error.code, error.message)
        else:
            response = HttpResponse(_UNAVAILABLE_PAGE, status=error.status)
        response["Retry-After"] = str(error.retry_after)
        return response
    if request.path.startswith("/api/"):
        return _envelope(500, "internal_error", "Internal error.")
    return html_server_error(request)


class ApiErrorEnvelopeMiddleware:
    """Every error answered under /api/ is the JSON envelope, DEBUG on or off.

    ``handler404``/``handler500`` above cover production; with DEBUG on, Django answers
    an unknown route or an exception with its technical HTML pages instead, and a few
    answers are never JSON in any mode (a function view's 405, Django's 400 for a bad
    Host header). Any error answer that is not JSON is replaced here by the envelope
    with the same status and headers (``Allow``, ``Retry-After``, ...); the technical
    500 page's traceback is in the log already (Django logs it before answering).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code < 400
            or response.streaming
            or not request.path.startswith("/api/")
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        status = response.status_code
        code, message = _CODES.get(status, ("error" if status < 500 else "internal_error", ""))
        if status == 405:
            message = f"{request.method} is not allowed here."
        envelope = _envelope(status, code, message or response.reason_phrase)
        for name, value in response.items():
            if name.lower() not in ("content-type", "content-length"):
                envelope[name] = value
        envelope.cookies = response.cookies
        return envelope
