"""The Django cache: Redis, with the app's timeouts, and a per-process stand-in when
Redis fails.

Only allauth uses the Django cache (its rate limits: failed logins, signups,
password resets, confirmation emails). Django's ``RedisCache`` raises on every
call while Redis is down (a 500 on the login page) and waits without a timeout
on a hung one. This backend uses the connection options of ``apps.core.redis``
(short timeouts, the down mark) and, when a call fails, serves it from an
in-process ``LocMemCache`` instead: a cached value reads as a miss (caches fail
open), and allauth's rate limits keep counting per process until Redis is back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

from .redis import connection_options, warn_unavailable

logger = logging.getLogger(__name__)


def _with_fallback(name: str) -> Callable[..., Any]:
    def method(self: ResilientRedisCache, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(super(ResilientRedisCache, self), name)(*args, **kwargs)
        except redis.RedisError:
            warn_unavailable(logger, "cache served in-process")
            return getattr(self.fallback, name)(*args, **kwargs)

    method.__name__ = name
    return method


class ResilientRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        params = dict(params)
        params["OPTIONS"] = {**connection_options(), **params.get("OPTIONS", {})}
        super().__init__(server, params)
        self.fallback = LocMemCache(
            f"tanso-fallback-{id(self)}", {"TIMEOUT": params.get("TIMEOUT", 300)}
        )

    add = _with_fallback("add")
    get = _with_fallback("get")
    set = _with_fallback("set")
    touch = _with_fallback("touch")
    delete = _with_fallback("delete")
    get_many = _with_fallback("get_many")
    has_key = _with_fallback("has_key")
    incr = _with_fallback("incr")
    set_many = _with_fallback("set_many")
    delete_many = _with_fallback("delete_many")
    clear = _with_fallback("clear")
