"""Per-key request rate limit (settings.API_RATE_LIMIT_PER_SECOND), counted in Redis
(in each process on its own while Redis is unavailable: apps.core.ratelimit.hit)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from apps.core.errors import RateLimited
from apps.core.ratelimit import hit
from apps.core.redis import env_key

from .authentication import request_key_or_none


class ApiKeyRateThrottle(BaseThrottle):
    def allow_request(self, request: Request, view: Any) -> bool:
        key = request_key_or_none(request)
        if key is None:
            return True
        wait = hit(env_key(key.environment_id, "rl", key.pk), settings.API_RATE_LIMIT_PER_SECOND, 1)
        if wait is not None:
            raise RateLimited(wait)
        return True
