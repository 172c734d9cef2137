"""What every request must respect before anything reads it (docs/api.md, "Limits").

* No NUL character in the path, the query string or a header. PostgreSQL refuses NUL
  in text, so a NUL that reached a query would be a 500: 400 here instead, naming the
  parameter or header. The exception is a page's query string: dashboard pages fall back
  to their defaults on nonsense parameters rather than fail, so the NULs are dropped
  from ``request.GET`` there. (JSON bodies are checked by the parser,
  ``core.api.parsers``; form fields by Django's form fields, which refuse NUL.)
* A body no larger than its path allows (``settings.REQUEST_BODY_LIMITS``), judged by
  ``Content-Length`` before a byte is read: 413 ``payload_too_large``.
* A chunked body (``Transfer-Encoding: chunked``, no ``Content-Length``). Django reads a
  body by its length only, so it would see an empty one. When the server marks its input
  as ending with the body (``wsgi.input_terminated``: granian de-chunks it), the body is
  read here, up to the limit, and handed on with its length; otherwise (Django's
  development server passes the raw chunked stream) nothing can read it safely: 411
  ``length_required``.

Under ``/api/`` the refusal is the JSON error envelope; a page gets a page.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse, QueryDict
from django.template.loader import render_to_string

from .api.exceptions import error_body
from .api.renderers import dumps

NUL = "\x00"


def body_limit(path: str) -> int:
    """The largest body, in bytes, that ``path`` accepts."""
    for prefix, limit in settings.REQUEST_BODY_LIMITS:
        if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
            return int(limit)
    return int(settings.REQUEST_BODY_LIMIT_DEFAULT)


def _header_name(meta_name: str) -> str:
    name = meta_name.removeprefix("HTTP_")
    return "-".join(part.capitalize() for part in name.split("_"))


def nul_in_environ(environ: Mapping[str, Any]) -> bool:
    """Whether the path, query string or any header carries a NUL (also percent-encoded
    in the query string, where ``%00`` decodes to one). Cheap: the fast path of the
    entitlement check (tanso/fastpath.py) asks it too."""
    query = str(environ.get("QUERY_STRING", ""))
    if NUL in str(environ.get("PATH_INFO", "")) or "%00" in query or NUL in query:
        return True
    for name, value in environ.items():  # a plain loop: half the time of any(...) here
        if name[:5] == "HTTP_" and isinstance(value, str) and NUL in value:
            return True
    return NUL in str(environ.get("CONTENT_TYPE", ""))


def _nul_fields(request: HttpRequest) -> tuple[str, dict[str, list[str]]]:
    """Which parts carry the NUL: a message and the ``fields`` of the error."""
    message = "The request contains a NUL character."
    if NUL in request.path_info:
        return "The URL path contains a NUL character.", {}
    fields: dict[str, list[str]] = {}
    for key, values in request.GET.lists():
        if NUL in key or any(NUL in value for value in values):
            fields[key.replace(NUL, "\\u0000")] = ["Must not contain a NUL character."]
    for name, value in request.META.items():
        if (name.startswith("HTTP_") or name == "CONTENT_TYPE") and NUL in str(value):
            fields[_header_name(name)] = ["Must not contain a NUL character."]
    return message, fields


def _without_nul(query: QueryDict) -> QueryDict:
    clean = QueryDict(mutable=True)
    for key, values in query.lists():
        clean.setlist(key.replace(NUL, ""), [value.replace(NUL, "") for value in values])
    clean._mutable = False
    return clean


def _refuse(
    request: HttpRequest,
    status: int,
    code: str,
    message: str,
    fields: dict[str, list[str]] | None = None,
) -> HttpResponse:
    if request.path.startswith("/api/"):
        return HttpResponse(
            dumps(error_body(code, message, fields)), status=status, content_type="application/json"
        )
    # A page: the product's error page (no request context: nothing in it may depend on
    # the refused request).
    html = render_to_string("error.html", {"status": status, "message": message})
    return HttpResponse(html, status=status)


class RequestLimitsMiddleware:
    """In both chains, right after the request id (the refusals carry it) and before
    anything that reads the body (the idempotency middleware hashes it)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        meta = request.META
        if nul_in_environ(meta):
            if not request.path.startswith("/api/") and not nul_in_environ(
                {**meta, "QUERY_STRING": ""}
            ):
                request.GET = _without_nul(request.GET)  # type: ignore[assignment]
            else:
                message, fields = _nul_fields(request)
                return _refuse(request, 400, "validation_failed", message, fields)
        limit = body_limit(request.path_info)
        too_large = f"The request body may hold at most {limit} bytes here."
        raw_length = meta.get("CONTENT_LENGTH") or ""
        if raw_length:
            try:
                length = int(raw_length)
            except ValueError:
                length = -1
            if length < 0:
                return _refuse(request, 400, "malformed_body", "Content-Length is not a number.")
            if length > limit:
                return _refuse(request, 413, "payload_too_large", too_large)
        elif "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
            if not meta.get("wsgi.input_terminated"):
                return _refuse(
                    request,
                    411,
                    "length_required",
                    "Send the body with a Content-Length header (chunked bodies are not "
                    "read by this server).",
                )
            body = meta["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                return _refuse(request, 413, "payload_too_large", too_large)
            # Django made the request's stream from the (absent) length, empty: replace it.
            meta["CONTENT_LENGTH"] = str(len(body))
            request._stream = LimitedStream(io.BytesIO(body), len(body))  # type: ignore[assignment]
        return self.get_response(request)
