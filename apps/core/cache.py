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
import threading
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
            answer = getattr(super(ResilientRedisCache, self), name)(*args, **kwargs)
        except redis.RedisError:
            warn_unavailable(logger, "cache served in-process")
            return getattr(self.fallback, name)(*args, **kwargs)
        self._flush_pending_deletes()
        return answer

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
        # Deletes Redis missed while it failed, made once it answers again: a lock that
        # allauth took in Redis just before an outage must not outlive the outage (its
        # rate limits refuse everyone while their counter's lock is held).
        self._pending_deletes: set[str] = set()
        self._pending_lock = threading.Lock()

    def _flush_pending_deletes(self) -> None:
        if not self._pending_deletes:
            return
        with self._pending_lock:
            keys, self._pending_deletes = list(self._pending_deletes), set()
        try:
            super().delete_many(keys)
        except redis.RedisError:
            with self._pending_lock:
                self._pending_deletes.update(keys)

    def delete(self, key: str, version: int | None = None) -> bool:
        # Both stores: a key written to either while Redis came and went is gone from both.
        local = self.fallback.delete(key, version=version)
        try:
            deleted = super().delete(key, version=version)
        except redis.RedisError:
            warn_unavailable(logger, "cache served in-process")
            with self._pending_lock:
                self._pending_deletes.add(key)
            return local
        self._flush_pending_deletes()
        return bool(deleted or local)

    def delete_many(self, keys: Any, version: int | None = None) -> None:
        keys = list(keys)
        self.fallback.delete_many(keys, version=version)
        try:
            super().delete_many(keys, version=version)
        except redis.RedisError:
            warn_unavailable(logger, "cache served in-process")
            with self._pending_lock:
                self._pending_deletes.update(keys)
            return
        self._flush_pending_deletes()

    add = _with_fallback("add")
    get = _with_fallback("get")
    set = _with_fallback("set")
    touch = _with_fallback("touch")
    get_many = _with_fallback("get_many")
    has_key = _with_fallback("has_key")
    incr = _with_fallback("incr")
    set_many = _with_fallback("set_many")
    clear = _with_fallback("clear")
