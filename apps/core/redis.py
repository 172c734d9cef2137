"""The shared Redis client and key naming.

Keys that belong to a tenant are hash-tagged by environment, ``tanso:{<env>}:...``,
so a Redis Cluster keeps one environment's keys on one slot group.
"""

from __future__ import annotations

import functools

import redis
from django.conf import settings


@functools.cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        health_check_interval=30,
        decode_responses=False,
    )


def env_key(environment_id: object, *parts: object) -> str:
    return "tanso:{" + str(environment_id) + "}:" + ":".join(str(p) for p in parts)


def global_key(*parts: object) -> str:
    return "tanso:" + ":".join(str(p) for p in parts)
