"""Deductions: an event's usage charged to the customer's pool (inside the event's
transaction, for the ingestion pipeline), and a manual deduction.

Every change to a pool goes through :class:`apps.credits.ledger.PoolBook` under the
pool's row lock; a hard-limit pool never goes below zero (what it cannot cover is the
shortfall), a soft one goes negative.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.accounts.models import AuditEntry
from apps.core.errors import Conflict, ValidationFailed
from apps.core.money import decimal_str
from apps.core.tenancy import scoped
from apps.credits import errors
from apps.credits import weights as weight_cache
from apps.credits.amounts import ZERO, quantize_credits
from apps.credits.ledger import PoolBook, flush_books, lock_books, lock_pool
from apps.credits.models import (
    CreditModel,
    CreditPool,
    CreditTransaction,
    TransactionType,
    WeightMatch,
)
from apps.credits.weights import WeightQuote
from apps.events.flags import EventFlags

from .audit import _audit, actor_label
from .checks import _constraint_of, _positive_credits
from .pools import _pool_ensure_locked

if TYPE_CHECKING:
    from apps.accounts.audit import Actor
    from apps.accounts.models import Environment


@dataclass(frozen=True)
class DeductionResult:
    """What a usage deduction did. ``pool`` is None when the customer has no credit pool."""

    deducted: Decimal  # credits taken from the pool
    shortfall: Decimal  # credits a hard limit refused (0 on soft pools)
    pool: CreditPool | None
    balance_after: Decimal | None
    hard_limit: bool
    credits: Decimal  # what the usage cost: units x weight, rounded to 6 places
    weight: WeightQuote
    transaction_id: uuid.UUID | None = None
    replayed: bool = False  # this event had been deducted already; nothing changed

    @property
    def insufficient(self) -> bool:
        return self.shortfall > 0

    def response_fields(self) -> dict[str, Any]:
        """The camelCase fields an event response carries for a credit-backed feature."""
        body: dict[str, Any] = {
            "creditsDeducted": self.deducted,
            "weightApplied": self.weight.credits_per_unit,
            "weightId": self.weight.weight_id,
            "weightMatch": self.weight.match,
            "remainingBalance": self.balance_after,
        }
        if self.insufficient:
            body["insufficientCredits"] = True
            body["creditShortfall"] = self.shortfall
        return body

    def stamp(self, flags: EventFlags) -> None:
        """Stamp the deduction on the stored event's flags."""
        flags.credits_charged(deducted=self.deducted, shortfall=self.shortfall)


def _resolve_usage_pool(
    environment_id: uuid.UUID,
    customer_id: uuid.UUID,
    denomination: str | None,
    *,
    lock: bool = True,
) -> CreditPool | None:
    """The pool a usage deduction draws from, row-locked (created if the model exists).

    With ``lock=False`` (nothing to deduct) the pool is only read, never created.
    """
    pools = CreditPool.objects.select_for_update() if lock else CreditPool.objects.all()
    if denomination:
        pool = (
            scoped(pools, environment_id)
            .filter(customer_id=customer_id, denomination=denomination)
            .first()
        )
        if pool is not None or not lock:
            return pool
        model = scoped(CreditModel, environment_id).filter(denomination=denomination).first()
        if model is None:
            raise ValidationFailed(
                f"No credit model for {denomination!r}.", code=errors.UNKNOWN_DENOMINATION
            )
        return _pool_ensure_locked(
            environment_id=environment_id, customer_id=customer_id, credit_model=model
        )
    found = list(scoped(pools, environment_id).filter(customer_id=customer_id)[:2])
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise errors.DenominationRequired()
    if not lock:
        return None
    models_ = list(scoped(CreditModel, environment_id).filter(archived_at__isnull=True)[:2])
    if len(models_) == 1:
        return _pool_ensure_locked(
            environment_id=environment_id, customer_id=customer_id, credit_model=models_[0]
        )
    return None


def credits_deduct_for_usage(
    *,
    environment: Environment,
    customer_id: uuid.UUID,
    feature_id: uuid.UUID,
    model: str | None,
    units: Decimal,
    occurred_at: dt.datetime,
    event_ref: str,
    denomination: str | None = None,
    default_credits_per_unit: Decimal | None = None,
) -> DeductionResult:
    """Charge an event's usage to the customer's credit pool, inside the caller's transaction.

    Credits = ``units`` x the weight in force at ``occurred_at`` (the model's
    weight beats the feature's; none means 1 per unit), rounded to 6 places.
    Grants are spent by priority, then earliest expiry, then oldest. A hard-limit
    pool never goes below zero: what it cannot cover is the ``shortfall`` (the
    event is still stored by the caller; flag it with ``stamp()``). A
    soft-limit pool goes negative. Idempotent by ``event_ref`` (a replay changes
    nothing and returns ``replayed=True``). ``default_credits_per_unit`` (the plan
    rule's ``creditsPerUnit``) replaces the 1-per-unit default when no weight is
    published for the feature.

    ``denomination`` picks the pool (the credit model backing the feature).
    Without it: the customer's only pool; with no pool, the environment's only
    credit model; otherwise there is nothing to charge (``pool`` None), or, when
    the customer has several pools, ``DenominationRequired`` (400).

    Round trips once the weights are cached and the pool exists: four, all prepared
    statements. Three lock the pool and read, under the lock, whether this event was
    charged already and the pool's grants (``ledger.lock_books``); one writes the
    entry, its consumptions, the grants drawn and the pool (``ledger.flush_books``).
    Inside the caller's transaction no savepoint is taken: nothing is written before
    the lock is held and the replay check made, so nothing can fail half-way that the
    caller would want to keep the transaction for. A missing pool (created here when
    its credit model exists) takes the general path below.
    """
    if units < 0:
        raise ValidationFailed(fields={"usageUnits": ["Must not be negative."]})
    quote = usage_quote(environment.pk, feature_id, model, occurred_at, default_credits_per_unit)
    credits = quantize_credits(units * quote.credits_per_unit)
    if credits <= 0:
        # Nothing to charge (zero usage): read the balance, take no lock.
        found = _resolve_usage_pool(environment.pk, customer_id, denomination, lock=False)
        if found is None:
            return DeductionResult(ZERO, ZERO, None, None, False, credits, quote)
        return DeductionResult(ZERO, ZERO, found, found.balance, found.hard_limit, credits, quote)
    key = f"event:{event_ref}"
    args: dict[str, Any] = {
        "environment_id": environment.pk,
        "customer_id": customer_id,
        "key": key,
        "credits": credits,
        "quote": quote,
        "fields": _usage_fields(
            key, event_ref=event_ref, feature_id=feature_id, model=model, units=units, quote=quote
        ),
    }
    if denomination:
        if connection.in_atomic_block:
            done = _deduct_usage_locked(denomination=denomination, **args)
        else:
            with transaction.atomic():
                done = _deduct_usage_locked(denomination=denomination, **args)
        if done is not None:
            return done
    return _deduct_usage_resolving(denomination=denomination, **args)


def _usage_fields(
    key: str,
    *,
    event_ref: str,
    feature_id: uuid.UUID,
    model: str | None,
    units: Decimal,
    quote: WeightQuote,
) -> dict[str, Any]:
    """The fields of a usage deduction's ledger entry."""
    return {
        "idempotency_key": key,
        "event_ref": event_ref,
        "feature_id": feature_id,
        "model": model or "",
        "units": units,
        "credits_per_unit": quote.credits_per_unit,
        "weight_id": quote.weight_id,
        "weight_match": quote.match,
        "description": "Usage",
    }


def usage_quote(
    environment_id: uuid.UUID,
    feature_id: uuid.UUID,
    model: str | None,
    occurred_at: dt.datetime,
    default_credits_per_unit: Decimal | None,
) -> WeightQuote:
    """The weight in force at ``occurred_at`` (the model's beats the feature's); with none
    published, the plan rule's ``default_credits_per_unit`` when given, else 1 per unit."""
    quote = weight_cache.weight_for(environment_id, feature_id, model or "", occurred_at)
    if quote.match == WeightMatch.NONE and default_credits_per_unit is not None:
        quote = WeightQuote(default_credits_per_unit, None, WeightMatch.NONE)
    return quote


def _deduct_usage_resolving(
    *,
    environment_id: uuid.UUID,
    customer_id: uuid.UUID,
    denomination: str | None,
    key: str,
    credits: Decimal,
    quote: WeightQuote,
    fields: dict[str, Any],
) -> DeductionResult:
    """The general path: find (or create) the pool the usage draws on, then deduct, in a
    savepoint; a replay is told by the unique ``(pool, idempotency_key)``."""
    pool: CreditPool | None = None
    try:
        with transaction.atomic():
            pool = _resolve_usage_pool(environment_id, customer_id, denomination)
            if pool is None:
                return DeductionResult(ZERO, ZERO, None, None, False, credits, quote)
            book = PoolBook(pool, now=timezone.now(), actor_label="system")
            book.settle()
            entry = _deduct(book, credits, **fields)
            book.flush()
    except IntegrityError as exc:
        # A replay: the unique (pool, idempotency_key) refused the second entry, and the
        # savepoint rolled back everything this call did. No check-then-insert on the hot path.
        if _constraint_of(exc) != "credit_tx_idempotency_unique" or pool is None:
            raise
        return _replayed_deduction(pool.pk, key, quote, credits)
    return DeductionResult(
        -entry.amount,
        entry.shortfall,
        pool,
        pool.balance,
        pool.hard_limit,
        credits,
        quote,
        entry.pk,
    )


def _deduct_usage_locked(
    *,
    environment_id: uuid.UUID,
    customer_id: uuid.UUID,
    denomination: str,
    key: str,
    credits: Decimal,
    quote: WeightQuote,
    fields: dict[str, Any],
) -> DeductionResult | None:
    """One usage deduction from an existing pool, in the current transaction: lock and
    read in three round trips (``ledger.lock_books``), write in one. None (nothing done,
    nothing locked) when the customer has no pool of the denomination yet."""
    found = lock_books(environment_id, [(customer_id, denomination, key)])
    pool = found.pools.get((customer_id, denomination))
    if pool is None:
        return None
    if (pool.pk, key) in found.used_keys:
        return _replayed_deduction(pool.pk, key, quote, credits)
    book = PoolBook(pool, now=timezone.now(), actor_label="system")
    book.use_grants(found.grants[pool.pk])
    book.settle()
    entry = _deduct(book, credits, **fields)
    flush_books([book])
    return DeductionResult(
        -entry.amount,
        entry.shortfall,
        pool,
        pool.balance,
        pool.hard_limit,
        credits,
        quote,
        entry.pk,
    )


def _replayed_deduction(
    pool_id: uuid.UUID, key: str, quote: WeightQuote, credits: Decimal
) -> DeductionResult:
    previous = (
        CreditTransaction.objects.filter(pool_id=pool_id, idempotency_key=key)
        .select_related("pool")
        .get()
    )
    pool = previous.pool  # read afresh: the rolled-back attempt changed our copy
    # Report what was charged then, even if a weight has changed since.
    then = WeightQuote(
        previous.credits_per_unit or quote.credits_per_unit,
        previous.weight_id,
        previous.weight_match or quote.match,
    )
    return DeductionResult(
        -previous.amount,
        previous.shortfall,
        pool,
        pool.balance,
        pool.hard_limit,
        previous.requested or credits,
        then,
        previous.pk,
        replayed=True,
    )


def _deduct(book: PoolBook, credits: Decimal, **fields: Any) -> CreditTransaction:
    """Post one deduction of ``credits`` and draw it from the grants.

    Hard limit: take what the live grants hold, record the rest as shortfall.
    Soft limit: take everything; what no grant backs is ``unbacked`` (debt).
    """
    pool = book.pool
    available = book.available() if pool.balance > 0 else ZERO
    if pool.hard_limit:
        taken = min(credits, available)
        shortfall, unbacked = credits - taken, ZERO
    else:
        taken = credits
        shortfall, unbacked = ZERO, max(credits - available, ZERO)
    entry = book.post(
        TransactionType.DEDUCTION,
        -taken,
        requested=credits,
        shortfall=shortfall,
        unbacked=unbacked,
        **fields,
    )
    book.draw(entry, taken - unbacked)
    return entry


@transaction.atomic
def credits_deduct(
    *,
    pool: CreditPool,
    amount: Decimal,
    actor: Actor | None,
    description: str = "",
    idempotency_key: str = "",
    metadata: dict[str, Any] | None = None,
) -> CreditTransaction:
    """A manual deduction. A hard-limit pool that cannot cover it refuses (409
    ``insufficient_credits``, nothing written); a soft one may go negative.
    Idempotent by ``idempotency_key`` (a replay returns the first entry)."""
    _positive_credits(amount, "amount")
    locked = lock_pool(pool.environment_id, pool.pk)
    if idempotency_key:
        previous = CreditTransaction.objects.filter(
            pool_id=locked.pk, idempotency_key=idempotency_key
        ).first()
        if previous is not None:
            if previous.transaction_type != TransactionType.DEDUCTION:
                raise Conflict("This idempotency key was used for another operation.")
            return previous
    book = PoolBook(locked, now=timezone.now(), actor_label=actor_label(actor))
    book.settle()
    if locked.hard_limit and book.available() < amount:
        # Nothing is written (the settle step is rolled back too; the next operation redoes it).
        raise errors.InsufficientCredits(
            f"The pool holds {decimal_str(max(locked.balance, ZERO))} credits; "
            f"{decimal_str(amount)} were asked for.",
            extra={"balance": max(locked.balance, ZERO), "requested": amount},
        )
    balance_before = locked.balance
    entry = _deduct(
        book,
        amount,
        idempotency_key=idempotency_key,
        description=description,
        metadata=metadata or {},
    )
    book.flush()
    _audit(
        locked,
        AuditEntry.Action.CREDITS_DEDUCTED,
        target=("credit_transaction", entry.pk),
        actor=actor,
        detail={
            "amount": amount,
            "shortfall": entry.shortfall,
            "balance": [balance_before, locked.balance],
            "description": description,
        },
    )
    return entry
