"""The shared Redis client and key naming.

Keys that belong to a tenant are hash-tagged by environment, ``tanso:{<env>}:...``,
so a Redis Cluster keeps one environment's keys on one slot group.

Every connection to Redis (this client, the Django cache in ``apps.core.cache``)
has short connect and read timeouts (``REDIS_CONNECT_TIMEOUT`` /
``REDIS_SOCKET_TIMEOUT``), is retried at most once and only on a dropped
connection (never on a timeout, so a hung Redis costs one timeout, not four),
and goes through ``GuardedConnection``: once a connect to a server failed, new
connections to it fail at once for ``REDIS_DOWN_SECONDS``, so web threads do
not each wait out a timeout on a Redis that is down or hung. Callers catch
``redis.RedisError`` and degrade.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

# (host, port) -> monotonic time before which new connections fail at once.
_down_until: dict[tuple[str, int], float] = {}


class GuardedConnection(redis.Connection):
    """A connection that refuses to connect to a server that just failed to answer.

    The check runs only when a connection is (re)established, never on the commands
    of an open connection: the hot paths keep their one round trip and no added work.
    """

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if self._sock:
            return
        address = (self.host, self.port)
        if _down_until.get(address, 0.0) > time.monotonic():
            raise redis.ConnectionError(f"Redis at {self.host}:{self.port} is marked unavailable")
        try:
            super().connect_check_health(
                check_health=check_health, retry_socket_connect=retry_socket_connect
            )
        except (redis.ConnectionError, redis.TimeoutError):
            _down_until[address] = time.monotonic() + settings.REDIS_DOWN_SECONDS
            logger.warning(
                "Redis at %s:%s unavailable; not retried for %s s",
                self.host,
                self.port,
                settings.REDIS_DOWN_SECONDS,
            )
            raise
        _down_until.pop(address, None)


# message -> monotonic time of its last log line (warn_unavailable).
_last_warned: dict[str, float] = {}


def warn_unavailable(log: logging.Logger, message: str) -> None:
    """Log that ``message`` happened without Redis, at most every 10 s per message: a
    fallback taken on every request must not flood the log while Redis is down."""
    now = time.monotonic()
    if _last_warned.get(message, 0.0) > now - 10:
        return
    if len(_last_warned) > 1_000:
        _last_warned.clear()
    _last_warned[message] = now
    log.warning("%s: Redis unavailable", message)


def connection_options() -> dict[str, Any]:
    """Pool options every Redis client of the app uses (see the module docstring)."""
    return {
        "connection_class": GuardedConnection,
        "socket_connect_timeout": settings.REDIS_CONNECT_TIMEOUT,
        "socket_timeout": settings.REDIS_SOCKET_TIMEOUT,
        # One retry, without backoff, when a pooled connection turns out dropped (a
        # Redis restart); a timeout is not retried.
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        "health_check_interval": 30,
    }


@functools.cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=False, **connection_options())


def reset_clients() -> None:
    """Forget the cached client and the down marks (tests that point REDIS_URL elsewhere)."""
    get_redis.cache_clear()
    _down_until.clear()


def env_key(environment_id: object, *parts: object) -> str:
    return "tanso:{" + str(environment_id) + "}:" + ":".join(str(p) for p in parts)


def global_key(*parts: object) -> str:
    return "tanso:" + ":".join(str(p) for p in parts)
