"""``Idempotency-Key`` for every mutating API call made with a key.

The first request with a key (per environment) is stored with its answer; the
same key with the same body within 24 h replays that answer (header
``Idempotent-Replayed: true``); the same key with another body is 409
``idempotency_conflict``; while the first is still running, 409
``idempotency_in_progress``. 5xx answers are not stored, so a retry runs again.

The claim is an ``INSERT ... ON CONFLICT DO NOTHING``: two concurrent requests
with one key cannot both run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from apps.core.api.renderers import dumps
from apps.core.errors import Unauthorized

from .authentication import key_for_request
from .models import IdempotencyRecord

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A claim older than this whose request never finished (a crash) may be retaken.
ABANDONED_AFTER = dt.timedelta(minutes=5)


def _envelope(status: int, code: str, message: str, request: HttpRequest) -> HttpResponse:
    body = {
        "error": {"code": code, "message": message, "requestId": getattr(request, "request_id", "")}
    }
    return HttpResponse(dumps(body), status=status, content_type="application/json")


def _claim(environment_id: uuid.UUID, key: str, request_hash: str) -> int | None:
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO apikeys_idempotencyrecord
                (environment_id, key, request_hash, created_at, content_type)
            VALUES (%s, %s, %s, %s, '')
            ON CONFLICT (environment_id, key) DO NOTHING
            RETURNING id
            """,
            [environment_id, key, request_hash, timezone.now()],
        )
        row = cur.fetchone()
    return row[0] if row else None


class IdempotencyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        idem_key = request.headers.get("Idempotency-Key")
        if (
            idem_key is None
            or request.method not in MUTATING
            or not request.path.startswith("/api/")
        ):
            return self.get_response(request)
        if not 1 <= len(idem_key) <= 255:
            return _envelope(
                400, "validation_failed", "Idempotency-Key must be 1-255 characters.", request
            )
        try:
            api_key = key_for_request(request)
        except Unauthorized:
            api_key = None
        if api_key is None:
            return self.get_response(request)  # the view answers 401 itself

        digest = hashlib.sha256()
        digest.update(f"{request.method} {request.path}\n".encode())
        digest.update(request.body)
        request_hash = digest.hexdigest()

        env_id = api_key.environment_id
        record_id = _claim(env_id, idem_key, request_hash)
        if record_id is None:
            existing = IdempotencyRecord.objects.filter(environment_id=env_id, key=idem_key).first()
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
                record_id = _claim(env_id, idem_key, request_hash)
                if record_id is None:
                    return _envelope(
                        409,
                        "idempotency_in_progress",
                        "A request with this Idempotency-Key is in progress.",
                        request,
                    )
            elif existing.request_hash != request_hash:
                return _envelope(
                    409,
                    "idempotency_conflict",
                    "This Idempotency-Key was used with a different request.",
                    request,
                )
            elif existing.status_code is None:
                return _envelope(
                    409,
                    "idempotency_in_progress",
                    "A request with this Idempotency-Key is in progress.",
                    request,
                )
            else:
                replay = HttpResponse(
                    bytes(existing.response_body or b""),
                    status=existing.status_code,
                    content_type=existing.content_type or "application/json",
                )
                replay["Idempotent-Replayed"] = "true"
                return replay

        try:
            response = self.get_response(request)
        except BaseException:
            IdempotencyRecord.objects.filter(pk=record_id).delete()
            raise
        if response.status_code >= 500 or response.streaming:
            IdempotencyRecord.objects.filter(pk=record_id).delete()
        else:
            IdempotencyRecord.objects.filter(pk=record_id).update(
                status_code=response.status_code,
                response_body=response.content,
                content_type=response.get("Content-Type", "application/json")[:100],
            )
        return response
