"""The ingestion step of Stripe-driven environments: one outbox row per event, in the event's
transaction (a step of ``apps.events.pipeline``, listed in ``settings.INGESTION_STEPS``
after the entitlements step; the ledger never imports us).

* ``wants``: the environment's Stripe mode, from a per-process cache re-read every
  ``MODE_RECHECK`` seconds (and dropped in this process when its billing settings
  are saved): an environment in another mode costs a dictionary lookup.
* ``after_store`` (inside the request's transaction, after the entitlements step,
  which runs first and charged the credits): for each stored event, the units its
  credits did not cover (:func:`uncovered_units`, from the entitlements step's typed
  ``CreditCharge``); the events with some are
  written to :class:`~apps.stripe_meters.models.MeterEvent` in one
  ``INSERT ... SELECT FROM jsonb_to_recordset ... ON CONFLICT DO NOTHING``, whatever
  the batch size. They commit or roll back with the events.
* ``after_commit``: wake the sender (at most one task per environment per
  ``KICK_WINDOW``; it starts after the window, so it takes the whole window's rows).
"""

from __future__ import annotations

import json
import logging
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import redis
from django.db import connection
from django.utils import timezone

from apps.billing.models import BillingSettings, StripeMode
from apps.core.memo import LocalCache
from apps.core.money import decimal_str
from apps.core.redis import get_redis
from apps.core.tenancy import scoped
from apps.credits import coverage
from apps.credits.coverage import CreditCharge
from apps.events.pipeline import Batch, Item

if TYPE_CHECKING:
    from apps.accounts.models import Environment

logger = logging.getLogger(__name__)

NAME = "stripe_meters"
MODE_RECHECK = 5.0  # seconds a process trusts its cached Stripe mode of an environment
KICK_WINDOW = 1.0  # seconds: at most one sender task per environment per window

_modes: LocalCache[uuid.UUID, bool] = LocalCache(
    "stripe_meters.modes", ttl=MODE_RECHECK, max_entries=10_000
)


def is_stripe_driven(environment_id: uuid.UUID) -> bool:
    """Whether Stripe drives billing in the environment (cached per process)."""
    cached = _modes.get(environment_id)
    if cached is not None:
        return cached
    driven = (
        scoped(BillingSettings, environment_id)
        .filter(stripe_mode=StripeMode.STRIPE_DRIVEN)
        .exists()
    )
    _modes.set(environment_id, driven)
    return driven


def forget_mode(environment_id: uuid.UUID) -> None:
    _modes.pop(environment_id)


def uncovered_units(item: Item) -> Decimal:
    """The units of a stored event that its credits did not pay for
    (``apps.credits.coverage``): every unit when no credit charge was made (no
    credit-backed rule, no pool, a credit error). A soft pool's debt counts as uncovered
    here, unlike in billing (see ``apps.credits.coverage``)."""
    charge = item.result(CreditCharge)
    return coverage.uncovered_units(
        item.event.usage_units, charge.coverage() if charge is not None else None
    )


_OUTBOX_SQL = """
INSERT INTO stripe_meters_meterevent
    (environment_id, event_id, occurred_at, customer_id, feature_id, value, status,
     attempts, next_attempt_at, last_error, created_at)
SELECT %s, r.event_id, r.occurred_at, r.customer_id, r.feature_id, r.value, 'pending',
       0, %s, '', %s
  FROM jsonb_to_recordset(%s::jsonb)
       AS r(event_id bigint, occurred_at timestamptz, customer_id uuid, feature_id uuid,
            value numeric)
ON CONFLICT (environment_id, event_id) DO NOTHING
"""


def write_outbox(environment_id: uuid.UUID, items: list[Item]) -> int:
    """One outbox row per stored event with uncovered units (one statement)."""
    rows: list[dict[str, Any]] = []
    for item in items:
        if item.event_id is None:
            continue
        value = uncovered_units(item)
        if value > 0:
            rows.append(
                {
                    "event_id": item.event_id,
                    "occurred_at": item.event.occurred_at.isoformat(),
                    "customer_id": str(item.customer_id),
                    "feature_id": str(item.feature_id),
                    "value": decimal_str(value),
                }
            )
    if not rows:
        return 0
    now = timezone.now()
    with connection.cursor() as cur:
        cur.execute(_OUTBOX_SQL, [environment_id, now, now, json.dumps(rows)])
        return cur.rowcount


def kick(environment_id: uuid.UUID) -> None:
    """Wake the sender of the environment, at most once per ``KICK_WINDOW``."""
    from .tasks import send_meter_events

    try:
        first = get_redis().set(
            f"stripe_meters:kick:{environment_id}", 1, nx=True, px=int(KICK_WINDOW * 1000)
        )
    except redis.RedisError:
        first = True  # no debounce without Redis; the task is idempotent
    if first:
        send_meter_events.apply_async((str(environment_id),), countdown=KICK_WINDOW)


class MeterEventsStep:
    name = NAME
    runs_after: tuple[str, ...] = ("entitlements",)  # reads its CreditCharge results

    def wants(self, environment: Environment) -> bool:
        return is_stripe_driven(environment.pk)

    def before_store(self, batch: Batch) -> None:
        return None

    def after_store(self, batch: Batch) -> None:
        batch.state[NAME] = write_outbox(batch.environment.pk, batch.stored)

    def after_commit(self, batch: Batch) -> None:
        if batch.state.get(NAME):
            try:
                kick(batch.environment.pk)
            except Exception:  # the broker down: the periodic sweep sends them
                logger.warning("stripe_meters: could not enqueue the sender", exc_info=True)
