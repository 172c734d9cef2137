"""The ingestion step of alerts: a key's budget crossing is evaluated as it moves, not
only at the next minute (a step of ``apps.events.pipeline``, listed in
``settings.INGESTION_STEPS``; the ledger never imports us).

* ``wants``: the environment has an enabled key-budget rule and a key with a budget
  (per-process cache, re-read every ``RECHECK`` seconds): any other environment pays a
  dictionary lookup.
* ``after_commit``: for the key that wrote the batch, at most one evaluation task per
  ``KICK_WINDOW``; it starts after the window, so it sees every event committed in it.
  Nothing is read on the ingestion path itself.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

import redis

from apps.apikeys.models import ApiKey
from apps.core.memo import LocalCache
from apps.core.redis import get_redis
from apps.core.tenancy import scoped
from apps.events.pipeline import Batch

from .models import AlertRule, Metric

if TYPE_CHECKING:
    from apps.accounts.models import Environment

logger = logging.getLogger(__name__)

NAME = "alerts"
RECHECK = 5.0
KICK_WINDOW = 1.0

_watched: LocalCache[uuid.UUID, frozenset[uuid.UUID]] = LocalCache(
    "alerts.budgeted_keys", ttl=RECHECK
)


def watched_keys(environment_id: uuid.UUID) -> frozenset[uuid.UUID]:
    """The environment's keys with a budget, if an enabled rule watches key budgets
    (cached per process for ``RECHECK`` seconds)."""
    cached = _watched.get(environment_id)
    if cached is not None:
        return cached
    keys: frozenset[uuid.UUID] = frozenset()
    if (
        scoped(AlertRule, environment_id)
        .filter(enabled=True, metric=Metric.KEY_BUDGET_PERCENT)
        .exists()
    ):
        keys = frozenset(
            scoped(ApiKey, environment_id)
            .filter(budget_cents__gt=0, revoked_at__isnull=True)
            .values_list("pk", flat=True)
        )
    _watched.set(environment_id, keys)
    return keys


def kick(environment_id: uuid.UUID, api_key_id: uuid.UUID) -> None:
    from .tasks import evaluate_key_budgets

    try:
        first = get_redis().set(
            f"alerts:budget:{api_key_id}", 1, nx=True, px=int(KICK_WINDOW * 1000)
        )
    except redis.RedisError:
        first = True  # no debounce without Redis; the task is idempotent
    if first:
        evaluate_key_budgets.apply_async(
            (str(environment_id), str(api_key_id)), countdown=KICK_WINDOW
        )


class AlertsStep:
    name = NAME
    runs_after: tuple[str, ...] = ()

    def wants(self, environment: Environment) -> bool:
        return bool(watched_keys(environment.pk))

    def before_store(self, batch: Batch) -> None:
        return None

    def after_store(self, batch: Batch) -> None:
        return None

    def after_commit(self, batch: Batch) -> None:
        if batch.api_key_id not in watched_keys(batch.environment.pk) or not batch.stored:
            return
        try:
            kick(batch.environment.pk, batch.api_key_id)
        except Exception:  # the broker down: the minute sweep evaluates it
            logger.warning("alerts: could not enqueue a budget evaluation", exc_info=True)
