"""Two middleware chains: the dashboard's (``settings.MIDDLEWARE``) and a lean one for the
API (``settings.API_MIDDLEWARE``).

The dashboard needs sessions, CSRF, messages, allauth, CSP, htmx and whitenoise; an
API call authenticated by its key needs none of them, and they cost ~0.8 ms of a
~2.8 ms request. :class:`ApiChainMiddleware` comes first in ``MIDDLEWARE`` and sends
every ``/api/`` request (except the schema and the Swagger page, which are pages) down
the API chain instead of the rest of ``MIDDLEWARE``. Being a middleware, not a second
WSGI application, it serves granian and Django's test client alike, so the tests
exercise the chain production runs.

The API chain ends in the same view dispatch (URL resolution, view middleware,
exception handling) as any Django handler: ``BaseHandler._get_response``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

# Under /api/ but pages (HTML, CSP) rather than key-authenticated calls: the full chain.
PAGES_UNDER_API = ("/api/docs", "/api/schema")


def is_api_path(path_info: str) -> bool:
    return path_info.startswith("/api/") and not path_info.startswith(PAGES_UNDER_API)


class _Chain(BaseHandler):
    """A handler whose middleware is the given list (synchronous middleware only: WSGI)."""

    def __init__(self, paths: list[str]) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        handler: Any = convert_exception_to_response(self._get_response)  # type: ignore[attr-defined]
        for path in reversed(paths):
            middleware = import_string(path)
            if not getattr(middleware, "sync_capable", True):
                raise ImproperlyConfigured(f"API middleware {path} must be sync-capable.")
            try:
                instance = middleware(handler)
            except MiddlewareNotUsed:
                continue
            if hasattr(instance, "process_view"):
                self._view_middleware.insert(0, instance.process_view)
            if hasattr(instance, "process_template_response"):
                self._template_response_middleware.append(instance.process_template_response)
            if hasattr(instance, "process_exception"):
                self._exception_middleware.append(instance.process_exception)
            handler = convert_exception_to_response(instance)
        self._middleware_chain = handler


class ApiChainMiddleware:
    """First in ``MIDDLEWARE``: API requests take ``API_MIDDLEWARE``, the rest go on."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.api: Any = _Chain(list(settings.API_MIDDLEWARE))._middleware_chain

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api_path(request.path_info):
            return self.api(request)
        return self.get_response(request)
