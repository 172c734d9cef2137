"""Writes for entitlements: reservations (hold, release, and expire).

A reservation is decided under the (customer, feature) lock, and the
(customer, denomination) lock when the feature is credit-backed, taken in that
order (every other lock comes after them, see ``locks.py``), and reads
everything it decides on from PostgreSQL under those locks: usage from the
ledger, live holds, and the pool's balance and holds in one statement. So two
reservations of one customer's feature (or pool) run one after the other and
the second sees the first: holds plus usage never exceed a hard cap, and holds
never exceed what a hard-limit pool can spend, however many arrive at once.
Redis plays no part in the decision (it may be down).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from apps.accounts.models import Environment
from apps.core.errors import Conflict, NotFound
from apps.core.tenancy import scoped

from . import counters, locks
from .models import Reservation
from .selectors import (
    Decision,
    Reason,
    credit_problem,
    credit_view,
    decide,
    held_units,
    limit_problem,
    usage_view,
    usage_window,
)

DEFAULT_TTL_SECONDS = 300
MAX_TTL_SECONDS = 24 * 3600
EXPIRE_BATCH = 1000


def entitlement_reserve(
    environment: Environment,
    *,
    reference_id: str,
    feature_key: str,
    units: Decimal,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    model: str = "",
    now: dt.datetime | None = None,
) -> Decision:
    """Check, and when allowed hold ``units`` (and their credits) for ``ttl_seconds``.

    Returns the decision; ``decision.reservation`` is the hold when allowed.
    """
    now = now or timezone.now()
    (decision,) = decide(
        environment,
        reference_id=reference_id,
        feature_keys=[feature_key],
        units=units,
        model=model,
        now=now,
    )
    applied = decision.applied
    if not decision.allowed or applied is None:
        return decision
    customer_id, feature_id = decision.customer_id, decision.feature_id
    assert customer_id is not None and feature_id is not None
    env_id = environment.pk
    with transaction.atomic():
        locks.lock([locks.usage_key(env_id, customer_id, feature_id)])
        if applied.rule.credit_backed:
            denomination = applied.rule.credit_denomination
            locks.lock([locks.pool_key(env_id, customer_id, denomination)])
        window = usage_window(applied)
        used = counters.ledger_sums(env_id, [(customer_id, feature_id, [window])], now=now)[0][
            window.field
        ]
        decision.usage = usage_view(applied, used, held_units(env_id, customer_id, feature_id, now))
        problem = limit_problem(decision.usage, units)
        if problem is not None:
            return decision.deny(Reason.LIMIT_REACHED, problem)
        credits = None
        if applied.rule.credit_backed:
            decision.credits = credit_view(
                env_id, customer_id, applied, units, model=model, now=now
            )
            problem = credit_problem(decision.credits)
            if problem is not None:
                return decision.deny(Reason.CREDITS_EXHAUSTED, problem)
            credits = decision.credits.required
        ttl = max(1, min(int(ttl_seconds), MAX_TTL_SECONDS))
        decision.reservation = Reservation.objects.create(
            environment=environment,
            customer_id=customer_id,
            feature_id=feature_id,
            subscription_id=applied.subscription_id,
            units=units,
            denomination=applied.rule.credit_denomination,
            credits=credits,
            expires_at=now + dt.timedelta(seconds=ttl),
            created_at=now,
        )
        # Before the commit, under the lock: checks of this feature now read holds.
        counters.mark_reservations(counters.counter_key(env_id, customer_id, feature_id))
    return decision


def reservation_release(
    environment: Environment,
    reservation_id: uuid.UUID,
    *,
    customer_id: uuid.UUID | None = None,
    now: dt.datetime | None = None,
) -> Reservation:
    """Give a held reservation back before it expires (the call it was made for did not
    happen): its units and credits stop counting at once. Releasing a released one
    again answers it as it is; a settled or expired one is a 409
    (``reservation_not_held``). ``customer_id``: only that customer's (a ck_ key's);
    any other is a 404, as one of another environment.

    Row-locked, so a release and the event settling the same reservation run one after
    the other: whichever comes second sees the first's outcome. No advisory lock is
    needed: a release only lowers holds, which nothing decides against later.
    """
    now = now or timezone.now()
    found = scoped(
        Reservation.objects.select_related("customer", "feature").select_for_update(of=("self",)),
        environment.pk,
    )
    if customer_id is not None:
        found = found.filter(customer_id=customer_id)
    with transaction.atomic():
        reservation = found.filter(pk=reservation_id).first()
        if reservation is None:
            raise NotFound("No such reservation.")
        status = reservation.status
        if status == Reservation.Status.HELD and reservation.expires_at <= now:
            status = Reservation.Status.EXPIRED
        if status == Reservation.Status.RELEASED:
            return reservation
        if status != Reservation.Status.HELD:
            raise Conflict(
                f"The reservation is {status}: only a held one can be released.",
                code="reservation_not_held",
                extra={"status": status},
            )
        reservation.status = Reservation.Status.RELEASED
        reservation.released_at = now
        reservation.save(update_fields=["status", "released_at"])
    return reservation


def reservations_expire(*, now: dt.datetime | None = None, batch_size: int = EXPIRE_BATCH) -> int:
    """Mark held reservations past their expiry ``expired`` (for every tenant; idempotent).

    Bookkeeping only: an expired hold stops counting at ``expires_at`` whether or
    not this has run.
    """
    now = now or timezone.now()
    total = 0
    while True:
        ids = list(
            Reservation.objects.filter(status=Reservation.Status.HELD, expires_at__lte=now)
            .order_by("expires_at")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return total
        total += Reservation.objects.filter(pk__in=ids, status=Reservation.Status.HELD).update(
            status=Reservation.Status.EXPIRED
        )
        if len(ids) < batch_size:
            return total
