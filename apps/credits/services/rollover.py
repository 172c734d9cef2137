"""Rollover at a period's end and the expiry of lapsed grants."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from apps.credits.ledger import PoolBook, lock_pool
from apps.credits.models import CreditPool

from .audit import actor_label


@transaction.atomic
def credits_rollover(*, pool: CreditPool, period_end: dt.datetime, actor: Actor | None) -> bool:
    """Apply the pool's rollover policy for the period ending at ``period_end``.

    Idempotent: a period already rolled over (or an earlier one) is a no-op
    (returns False). Lapsed grants are expired in the same step.
    """
    locked = lock_pool(pool.environment_id, pool.pk)
    through = locked.rolled_over_through
    if through is not None and through >= period_end:
        return False
    book = PoolBook(locked, now=timezone.now(), actor_label=actor_label(actor))
    book.rollover(period_end)
    book.expire_lapsed()
    book.flush()
    return True


@dataclass(frozen=True)
class SettleResult:
    entries: int  # ledger entries written (expirations, rollover adjustments)

    def as_dict(self) -> dict[str, int]:
        return {"entries": self.entries}


@transaction.atomic
def credits_settle_pool(*, pool_id: uuid.UUID, actor: Actor | None = None) -> SettleResult:
    """Apply a due rollover and expire lapsed grants of one pool (what the periodic tasks
    call; also done before every pool operation). Idempotent."""
    pool = CreditPool.objects.select_for_update().filter(pk=pool_id).first()
    if pool is None:
        return SettleResult(0)
    book = PoolBook(pool, now=timezone.now(), actor_label=actor_label(actor))
    book.settle()
    written = len(book.entries)
    if written:
        book.flush()
    return SettleResult(written)


if TYPE_CHECKING:
    from apps.accounts.audit import Actor
