"""Usage deductions of an ingestion batch: every charge of the batch in a fixed number of
round trips, either at once (:func:`credits_deduct_for_usage_many`) or in two halves
around the store of the events (:func:`credits_prepare_usage`,
:func:`credits_commit_usage`)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from apps.core.errors import TansoError, ValidationFailed
from apps.core.tenancy import scoped
from apps.credits import errors
from apps.credits.amounts import ZERO, quantize_credits
from apps.credits.ledger import LockedBooks, PoolBook, flush_books, lock_books, read_books
from apps.credits.models import CreditModel, CreditPool, CreditTransaction
from apps.credits.weights import WeightQuote

from .deductions import DeductionResult, _deduct, _replayed_deduction, usage_quote
from .pools import _pool_ensure_locked

if TYPE_CHECKING:
    from apps.accounts.models import Environment


@dataclass(frozen=True)
class UsageCharge:
    """One event's usage to charge (``credits_deduct_for_usage_many``)."""

    customer_id: uuid.UUID
    feature_id: uuid.UUID
    model: str | None
    units: Decimal
    occurred_at: dt.datetime
    event_ref: str
    denomination: str
    default_credits_per_unit: Decimal | None = None


def credits_deduct_for_usage_many(
    *, environment: Environment, charges: Sequence[UsageCharge]
) -> list[DeductionResult | TansoError]:
    """``credits_deduct_for_usage`` for the events of an ingestion batch, in the caller's
    transaction: the same charges, ledger entries and results (one per charge, in order;
    a ``TansoError`` where that one charge could not be made, e.g. no credit model), in a
    fixed number of round trips whatever the number of events and pools: three lock the
    pools (in id order) and read, under the locks, the replays and the grants; one
    writes new grants, drawn grants, entries, consumptions and pools
    (``ledger.flush_books``). The charges of one pool are made in order; a pool is
    created (locked) when missing and its credit model exists (two more round trips
    per missing pool, two more to read what the new pools hold). No savepoint inside
    the caller's transaction: an error here fails the whole request.
    """
    if not charges:
        return []
    keys = [f"event:{c.event_ref}" for c in charges]
    with transaction.atomic(savepoint=False):
        planned = _plan_usage(environment, charges, keys)
        flush_books(planned.books)
    return planned.results


@dataclass
class PreparedUsage:
    """Usage charges computed before their events are stored (``credits_prepare_usage``):
    the pools are locked, the entries built; only the events' ids are missing."""

    books: list[PoolBook]
    results: list[DeductionResult | TansoError]
    entries: list[CreditTransaction | None]  # per charge, None when nothing is posted
    pool_ids: list[uuid.UUID | None]


def credits_prepare_usage(
    *, environment: Environment, charges: Sequence[UsageCharge]
) -> PreparedUsage:
    """The first half of ``credits_deduct_for_usage_many``, for ingestion to run *before*
    it stores the events (``event_ref`` of the charges is not known yet): lock the pools,
    read their grants, settle them and compute every charge, in the caller's transaction.
    So the store's row locks (rollups shared by every event of a feature) are held
    after it only for :func:`credits_commit_usage`'s one round trip, not for this work."""
    return _plan_usage(environment, charges, None)


def credits_commit_usage(
    prepared: PreparedUsage, event_refs: Sequence[str]
) -> list[DeductionResult | TansoError] | None:
    """Write the prepared charges for these events (one ``event_ref`` per charge, in
    order), in one statement. None, with nothing written, when one of the events had
    been charged already (a replay): the caller then charges them with
    ``credits_deduct_for_usage_many``, which answers replays as such."""
    probes = []
    for entry, pool_id, ref in zip(prepared.entries, prepared.pool_ids, event_refs, strict=True):
        if entry is not None and pool_id is not None:
            entry.event_ref = ref
            entry.idempotency_key = f"event:{ref}"
            probes.append((pool_id, entry.idempotency_key))
    if not flush_books(prepared.books, unless_used=probes):
        return None
    return prepared.results


def _quotes(env_id: uuid.UUID, charges: Sequence[UsageCharge]) -> list[tuple[WeightQuote, Decimal]]:
    """Each charge's weight and credits (units x weight, rounded to 6 places)."""
    quotes = []
    for charge in charges:
        if charge.units < 0:
            raise ValidationFailed(fields={"usageUnits": ["Must not be negative."]})
        quote = usage_quote(
            env_id,
            charge.feature_id,
            charge.model,
            charge.occurred_at,
            charge.default_credits_per_unit,
        )
        quotes.append((quote, quantize_credits(charge.units * quote.credits_per_unit)))
    return quotes


def _create_missing_pools(
    env_id: uuid.UUID,
    charges: Sequence[UsageCharge],
    probe_keys: list[str],
    found: LockedBooks,
) -> None:
    """Create (locked) the pools the charges need and lack, where their credit model
    exists, and add what they hold (grants, keys used) to ``found``."""
    pools = found.pools
    wanted = {(c.customer_id, c.denomination) for c in charges}
    missing = sorted(wanted - set(pools), key=lambda pair: (str(pair[0]), pair[1]))
    if not missing:
        return
    models_ = {
        m.denomination: m
        for m in scoped(CreditModel, env_id).filter(denomination__in={d for _, d in missing})
    }
    created = []
    for customer_id, denomination in missing:
        if denomination in models_:
            made = _pool_ensure_locked(
                environment_id=env_id,
                customer_id=customer_id,
                credit_model=models_[denomination],
            )
            pools[(customer_id, denomination)] = made
            created.append(made.pk)
    if created:
        probes = [
            (pools[(c.customer_id, c.denomination)].pk, key)
            for c, key in zip(charges, probe_keys, strict=True)
            if key
            and (c.customer_id, c.denomination) in pools
            and pools[(c.customer_id, c.denomination)].pk in created
        ]
        more = read_books(created, probes)
        found.used_keys |= more.used_keys
        found.grants.update(more.grants)


def _post_charge(
    charge: UsageCharge,
    *,
    pool: CreditPool,
    book: PoolBook,
    key: str,
    quote: WeightQuote,
    credits: Decimal,
    replayed: set[tuple[uuid.UUID, str]],
) -> tuple[DeductionResult, CreditTransaction | None]:
    """Post one charge on its pool's book: its result and its entry (None when nothing is
    charged)."""
    if credits <= 0:
        result = DeductionResult(ZERO, ZERO, pool, pool.balance, pool.hard_limit, credits, quote)
        return result, None
    entry = _deduct(
        book,
        credits,
        idempotency_key=key,
        event_ref=charge.event_ref,
        feature_id=charge.feature_id,
        model=charge.model or "",
        units=charge.units,
        credits_per_unit=quote.credits_per_unit,
        weight_id=quote.weight_id,
        weight_match=quote.match,
        description="Usage",
    )
    if key:
        replayed.add((pool.pk, key))  # the same event twice in one batch: once
    result = DeductionResult(
        -entry.amount,
        entry.shortfall,
        pool,
        entry.balance_after,
        pool.hard_limit,
        credits,
        quote,
        entry.pk,
    )
    return result, entry


def _plan_usage(
    environment: Environment, charges: Sequence[UsageCharge], keys: list[str] | None
) -> PreparedUsage:
    """Lock the charges' pools, read their grants (and, with ``keys``, which of the keys
    they used: those charges are replays), settle them and post every charge, in order;
    nothing written yet."""
    results: list[DeductionResult | TansoError | None] = [None] * len(charges)
    entries: list[CreditTransaction | None] = [None] * len(charges)
    pool_ids: list[uuid.UUID | None] = [None] * len(charges)
    env_id = environment.pk
    quotes = _quotes(env_id, charges)
    probe_keys = keys if keys is not None else [""] * len(charges)  # "": no probe
    found = lock_books(
        env_id,
        [(c.customer_id, c.denomination, k) for c, k in zip(charges, probe_keys, strict=True)],
    )
    _create_missing_pools(env_id, charges, probe_keys, found)
    pools, replayed, grants = found.pools, found.used_keys, found.grants
    now = timezone.now()
    books: dict[uuid.UUID, PoolBook] = {}
    for index, charge in enumerate(charges):
        pool = pools.get((charge.customer_id, charge.denomination))
        quote, credits = quotes[index]
        if pool is None:
            results[index] = ValidationFailed(
                f"No credit model for {charge.denomination!r}.",
                code=errors.UNKNOWN_DENOMINATION,
            )
            continue
        pool_ids[index] = pool.pk
        key = probe_keys[index]
        if key and (pool.pk, key) in replayed:
            results[index] = _replayed_deduction(pool.pk, key, quote, credits)
            continue
        book = books.get(pool.pk)
        if book is None:
            book = books[pool.pk] = PoolBook(pool, now=now, actor_label="system")
            book.use_grants(grants[pool.pk])
            book.settle()
        results[index], entries[index] = _post_charge(
            charge, pool=pool, book=book, key=key, quote=quote, credits=credits, replayed=replayed
        )
    assert all(r is not None for r in results)
    return PreparedUsage(
        list(books.values()),
        results,  # type: ignore[arg-type]
        entries,
        pool_ids,
    )
