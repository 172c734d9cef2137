"""``Idempotency-Key`` for every mutating API call made with a key.

The first request with a key (per API key and environment) is stored with its
answer; the same key with the same request (method, path, query string and
body) within 24 h replays that answer (header ``Idempotent-Replayed: true``);
the same key with another request is 409 ``idempotency_conflict``; while the
first is still running, 409 ``idempotency_in_progress``. 5xx answers are not
stored, so a retry runs again.

A record belongs to the API key that made it: another key sending the same
``Idempotency-Key`` neither sees its answer nor blocks it. The claim and the
replay happen in :class:`APIView`, after DRF's ``initial()`` has authenticated
the key, checked its scope and counted it against the rate limit, so a replay
answers only a caller who may make the request now.

The claim is an ``INSERT ... ON CONFLICT DO NOTHING``: two concurrent requests
with one key cannot both run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from rest_framework import views
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.errors import Conflict, ValidationFailed
from apps.core.tenancy import scoped

from .models import ApiKey, IdempotencyRecord

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A claim older than this whose request never finished (a crash) may be retaken.
ABANDONED_AFTER = dt.timedelta(minutes=5)


class _Replay(Exception):
    """Not an error: carries the stored answer out of ``initial()``."""

    def __init__(self, response: Response) -> None:
        self.response = response
        super().__init__("replayed")


def _in_progress() -> Conflict:
    return Conflict(
        "A request with this Idempotency-Key is in progress.", code="idempotency_in_progress"
    )


def _claim(api_key: ApiKey, key: str, request_hash: str) -> int | None:
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO apikeys_idempotencyrecord
                (environment_id, api_key_id, key, request_hash, created_at, content_type)
            VALUES (%s, %s, %s, %s, %s, '')
            ON CONFLICT (environment_id, api_key_id, key) DO NOTHING
            RETURNING id
            """,
            [api_key.environment_id, api_key.pk, key, request_hash, timezone.now()],
        )
        row = cur.fetchone()
    return row[0] if row else None


def request_hash(request: HttpRequest) -> str:
    """What makes two requests "the same": method, path, query string and body."""
    digest = hashlib.sha256()
    query = request.META.get("QUERY_STRING", "")
    digest.update(f"{request.method} {request.path}?{query}\n".encode())
    digest.update(request.body)
    return digest.hexdigest()


def idempotency_begin(request: HttpRequest, api_key: ApiKey, idem_key: str) -> int:
    """Claim ``idem_key`` for this request and return the record's id, or raise: the
    stored answer (:class:`_Replay`), 409 ``idempotency_conflict`` or
    ``idempotency_in_progress``."""
    if not 1 <= len(idem_key) <= 255:
        raise ValidationFailed(
            "Idempotency-Key must be 1-255 characters.",
            fields={"Idempotency-Key": ["Must be 1-255 characters."]},
        )
    this_hash = request_hash(request)
    record_id = _claim(api_key, idem_key, this_hash)
    if record_id is not None:
        return record_id
    existing = (
        scoped(IdempotencyRecord, api_key.environment_id)
        .filter(api_key=api_key, key=idem_key)
        .first()
    )
    now = timezone.now()
    stale = existing is not None and (
        existing.created_at < now - settings.IDEMPOTENCY_TTL
        or (existing.status_code is None and existing.created_at < now - ABANDONED_AFTER)
    )
    if existing is None or stale:
        if existing is not None:
            IdempotencyRecord.objects.filter(
                pk=existing.pk, created_at=existing.created_at
            ).delete()
        record_id = _claim(api_key, idem_key, this_hash)
        if record_id is None:
            raise _in_progress()
        return record_id
    if existing.request_hash != this_hash:
        raise Conflict(
            "This Idempotency-Key was used with a different request.",
            code="idempotency_conflict",
        )
    if existing.status_code is None:
        raise _in_progress()
    # A DRF Response whose content is set is rendered already: the stored bytes go out as
    # they are (DRF's handle_exception and finalize_response want a Response).
    replay = Response(status=existing.status_code)
    replay.content = bytes(existing.response_body or b"")
    replay["Content-Type"] = existing.content_type or "application/json"
    replay["Idempotent-Replayed"] = "true"
    raise _Replay(replay)


def idempotency_finish(record_id: int, response: HttpResponseBase | None) -> None:
    """Store a finished request's answer; forget the claim when there is none to store
    (an exception, a 5xx, a stream), so a retry runs again."""
    if response is None or response.status_code >= 500 or response.streaming:
        IdempotencyRecord.objects.filter(pk=record_id).delete()
        return
    assert isinstance(response, HttpResponse)
    IdempotencyRecord.objects.filter(pk=record_id).update(
        status_code=response.status_code,
        response_body=response.content,
        content_type=response.get("Content-Type", "application/json")[:100],
    )


class APIView(views.APIView):
    """DRF's ``APIView`` that honours ``Idempotency-Key``: every API view derives from it
    (``tests/apikeys/test_scope_table.py`` checks each /api/ route).

    Without the header (the hot paths' common case) it costs one header lookup: no query.
    """

    # The claimed record's id while this request runs with an Idempotency-Key.
    _idempotency_record: int | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Authentication, scope and rate limit first: a replay or a claim only for a
        # caller who may make this request.
        super().initial(request, *args, **kwargs)
        if request.method not in MUTATING:
            return
        idem_key = request._request.headers.get("Idempotency-Key")
        if idem_key is None:
            return
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return  # a public view called without a key: nothing to scope a record to
        self._idempotency_record = idempotency_begin(request._request, api_key, idem_key)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, _Replay):
            return exc.response
        return super().handle_exception(exc)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            response = super().dispatch(request, *args, **kwargs)
            if self._idempotency_record is not None and not response.streaming:
                # Rendered now (Django would render it next) to store the bytes it sends.
                render = getattr(response, "render", None)
                if callable(render):
                    render()
        except BaseException:
            if self._idempotency_record is not None:
                idempotency_finish(self._idempotency_record, None)
            raise
        if self._idempotency_record is not None:
            idempotency_finish(self._idempotency_record, response)
        return response
