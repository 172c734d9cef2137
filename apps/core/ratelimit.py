"""Rate limits in Redis, and what each does when Redis fails.

* ``hit``: a fixed window (INCR + EXPIRE in one round trip), for the per-key
  request rate, where a window of one second is exact enough and every request
  pays for it. The entitlement check counts in the same keys (``counters.read``).
* ``sliding_hit``: a sliding window (a sorted set of hit times, trimmed, counted
  and added to by one Lua script, so concurrent callers cannot both take the
  last slot), for limits over long windows that a fixed window would let through
  twice at a window's edge (failed authentications, signups).

Without Redis, ``hit`` and ``local_sliding_hit`` count in this process only (the
limit then holds per process), and ``sliding_hit`` raises ``LimiterUnavailable``
so that its caller picks its own fallback.
"""

from __future__ import annotations

import collections
import logging
import math
import secrets
import threading
import time

import redis

from apps.core.redis import get_redis, warn_unavailable

logger = logging.getLogger(__name__)


class LimiterUnavailable(Exception):
    """Redis could not count the hit; the caller decides (fallback or refusal)."""


# --- Fixed window ------------------------------------------------------------------

# full key -> (window number, count); the fallback while Redis is unavailable.
_local_fixed: dict[str, tuple[int, int]] = {}
_local_lock = threading.Lock()


def hit(key: str, limit: int, window_seconds: int) -> int | None:
    """Count one hit; return seconds to wait when over ``limit``, else None.

    Redis being unavailable makes the count per process (logged), rather than
    no limit or a refusal: this limit protects capacity, and each process still
    holds it.
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
        warn_unavailable(logger, "rate limits counted in-process")
        with _local_lock:
            if len(_local_fixed) > 10_000:
                _local_fixed.clear()
            seen_window, seen = _local_fixed.get(key, (window, 0))
            count = (seen if seen_window == window else 0) + 1
            _local_fixed[key] = (window, count)
    if count > limit:
        return (window + 1) * window_seconds - now
    return None


# --- Sliding window ----------------------------------------------------------------

# KEYS[1]: the sorted set of hit times (ms). ARGV: now (ms), window (ms), limit, a
# unique member. Returns 0 when the hit is counted, else the milliseconds until the
# oldest counted hit leaves the window. Refused hits are not stored, so the set never
# holds more than ``limit`` members.
_SLIDING_LUA = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""


def sliding_hit(key: str, limit: int, window_seconds: int) -> int | None:
    """Count one hit in the last ``window_seconds``; seconds to wait when over ``limit``.

    Raises ``LimiterUnavailable`` when Redis cannot count it.
    """
    now_ms = int(time.time() * 1000)
    member = f"{now_ms}:{secrets.token_hex(4)}"
    try:
        client = get_redis()
        wait_ms = int(
            client.register_script(_SLIDING_LUA)(
                keys=[key], args=[now_ms, window_seconds * 1000, limit, member], client=client
            )
        )
    except redis.RedisError as exc:
        warn_unavailable(logger, "sliding-window limits counted by their fallbacks")
        raise LimiterUnavailable(str(exc)) from exc
    return math.ceil(wait_ms / 1000) if wait_ms > 0 else None


# key -> hit times (monotonic seconds), oldest first; the in-process sliding windows.
_local_sliding: dict[str, collections.deque[float]] = {}


def local_sliding_hit(key: str, limit: int, window_seconds: int) -> int | None:
    """``sliding_hit`` counted in this process only (the fallback when Redis fails)."""
    now = time.monotonic()
    with _local_lock:
        if len(_local_sliding) > 10_000:
            _local_sliding.clear()
        hits = _local_sliding.setdefault(key, collections.deque())
        while hits and hits[0] <= now - window_seconds:
            hits.popleft()
        if len(hits) < limit:
            hits.append(now)
            return None
        return max(1, math.ceil(hits[0] + window_seconds - now))


def reset_local() -> None:
    """Forget the in-process counts (tests)."""
    with _local_lock:
        _local_fixed.clear()
        _local_sliding.clear()
