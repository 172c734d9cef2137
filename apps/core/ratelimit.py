"""Fixed-window rate limits in Redis (INCR + EXPIRE in one round trip)."""

from __future__ import annotations

import logging
import time

import redis

from apps.core.redis import get_redis

logger = logging.getLogger(__name__)


def hit(key: str, limit: int, window_seconds: int) -> int | None:
    """Count one hit; return seconds to wait when over ``limit``, else None.

    Redis being down does not block callers (rate limits protect capacity, not
    correctness); the failure is logged.
    """
    now = int(time.time())
    window = now // window_seconds
    full_key = f"{key}:{window}"
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.incr(full_key)
        pipe.expire(full_key, window_seconds + 1)
        count = int(pipe.execute()[0])
    except redis.RedisError:
        logger.warning("rate limit check skipped: Redis unavailable")
        return None
    if count > limit:
        return (window + 1) * window_seconds - now
    return None
