"""The entitlement check's common case, answered before Django's request handling.

``POST /api/v1/client/entitlements/check`` is the integrators' hot path (PRODUCT.md:
2,000 checks/s on two cores). Its decision costs one Redis round trip and no query;
Django's request object, the API middleware, URL resolution and the response object
cost about as much again. :class:`LeanCheck` wraps the WSGI application and answers
the common check itself, with the code the view uses (``apps.entitlements.api
.lean_check``: the same key verification, scope rules, input parsing, rate limit,
decision and rendering), and with what the API middleware would add:

* the request id (``X-Request-ID`` echoed when sane, else minted; set for logging);
* the host check (``ALLOWED_HOSTS``, Django's own code): a bad host goes to Django (400);
* the request limits (``core.request_limits``): a NUL in the query string or a header,
  or a body over the path's limit, goes to Django (400, 413); the body's JSON is parsed
  with the API's parser, whose refusals (too deep, a NUL) go to Django too;
* the security headers of ``SecurityMiddleware`` and ``XFrameOptionsMiddleware``, made
  by those middlewares once per process;
  with ``SECURE_SSL_REDIRECT`` a plain-HTTP request goes to Django (the redirect);
* Django's ``request_started`` / ``request_finished`` signals (database connection
  upkeep, as for any request).

Everything else goes to Django, whose answer is then exactly the full stack's: no key
or a bad one, a missing scope, bad input, another content type or ``Accept``, a
reservation, an ``Idempotency-Key`` header (the API view's business),
over the rate limit, an unexpected middleware list, a body without a length. The
body read here is handed on. ``tests/entitlements/test_lean_check.py`` compares the
answers with the full stack's (status, body, headers) case by case.
"""

from __future__ import annotations

import functools
import io
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core import signals
from django.core.exceptions import DisallowedHost
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware

from apps.apikeys.authentication import raw_key_from
from apps.core.middleware import _request_id
from apps.core.request_limits import body_limit, nul_in_environ
from apps.entitlements.api import ALLOW, lean_check

CHECK_PATH = "/api/v1/client/entitlements/check"
# The API chain whose effects this module reproduces; with any other, Django answers.
MIRRORED_API_MIDDLEWARE = (
    "apps.core.middleware.RequestIdMiddleware",
    "apps.core.api.errorpages.ApiErrorEnvelopeMiddleware",  # its answers are JSON already
    "apps.core.request_limits.RequestLimitsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # as RequestIdMiddleware

StartResponse = Callable[..., Any]


class _Headers:
    """``request.headers.get`` for HTTP headers, read straight from the environ (Django's
    ``HttpHeaders`` parses every header first)."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ

    def get(self, name: str, default: str = "") -> str:
        return str(self.environ.get("HTTP_" + name.upper().replace("-", "_"), default))


class _Meta(HttpRequest):
    """Just enough of a request for Django's own host, scheme and key-header logic."""

    def __init__(self, environ: dict[str, Any]) -> None:  # no HttpRequest.__init__: cheap
        self.META = environ
        self.__dict__["headers"] = _Headers(environ)  # over the cached_property

    def _get_scheme(self) -> str:
        return str(self.META.get("wsgi.url_scheme", "http"))


def _applies(environ: dict[str, Any]) -> bool:
    return (
        environ.get("PATH_INFO") == CHECK_PATH
        and environ.get("REQUEST_METHOD") == "POST"
        and "HTTP_IDEMPOTENCY_KEY" not in environ
        and tuple(settings.API_MIDDLEWARE) == MIRRORED_API_MIDDLEWARE
        and settings.MIDDLEWARE[0] == "tanso.chains.ApiChainMiddleware"
        and not settings.DISALLOWED_USER_AGENTS
        and not nul_in_environ(environ)  # RequestLimitsMiddleware's 400
    )


@functools.cache
def _security_headers(secure: bool) -> tuple[tuple[str, str], ...]:
    """The headers ``SecurityMiddleware`` and ``XFrameOptionsMiddleware`` add to a JSON
    answer, made by those middlewares themselves once per process (and per scheme):
    they depend on the settings and the scheme only. Cleared when a setting changes."""
    response = HttpResponse(content_type="application/json")
    request = _Meta({"wsgi.url_scheme": "https" if secure else "http"})
    for middleware in (SecurityMiddleware, XFrameOptionsMiddleware):
        response = middleware(lambda r, done=response: done).process_response(request, response)
    return tuple((k, v) for k, v in response.items() if k != "Content-Type")


@receiver(signals.setting_changed)
def _settings_changed(**kwargs: Any) -> None:
    _security_headers.cache_clear()


def answer(environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes] | None:
    """(status, headers, body) of a common check, or None: Django answers (``environ``
    then carries the body again if it was read)."""
    if not _applies(environ):
        return None
    meta = _Meta(environ)
    try:
        meta.get_host()
    except DisallowedHost:
        return None
    secure = meta.is_secure()
    if settings.SECURE_SSL_REDIRECT and not secure:
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    if length < 0 or length > body_limit(CHECK_PATH):  # RequestLimitsMiddleware's 413
        return None
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)  # for Django, if it answers after all
    environ["CONTENT_LENGTH"] = str(len(body))
    incoming = environ.get("HTTP_X_REQUEST_ID", "")
    request_id = incoming if _SAFE_ID.match(incoming) else f"req_{uuid.uuid4().hex}"
    signals.request_started.send(sender=LeanCheck, environ=environ)
    token = _request_id.set(request_id)
    try:
        payload = lean_check(
            raw_key=raw_key_from(meta),
            content_type=environ.get("CONTENT_TYPE", ""),
            accept=environ.get("HTTP_ACCEPT", ""),
            body=body,
        )
    except Exception:  # e.g. PostgreSQL unreachable while verifying the key: the view's
        # fail-closed answer (``_EntitlementView.handle_exception``)
        payload = None
    finally:
        _request_id.reset(token)
        signals.request_finished.send(sender=LeanCheck)
    if payload is None:
        return None
    headers = [
        ("Content-Type", "application/json"),
        ("Allow", ALLOW),
        ("Content-Length", str(len(payload))),
        *_security_headers(secure),
        ("X-Request-ID", request_id),
    ]
    return "200 OK", headers, payload


class LeanCheck:
    """WSGI middleware: the common entitlement check here, every other request to ``app``."""

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == CHECK_PATH:
            done = answer(environ)
            if done is not None:
                status, headers, body = done
                start_response(status, headers)
                return [body]
        return self.app(environ, start_response)
