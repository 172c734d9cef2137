"""Writes for credits: models, plan allocations, pools, grants, deductions, reversals,
rollover and expiry, weights and the price book.

Every change to a pool goes through :class:`apps.credits.ledger.PoolBook` under
the pool's row lock, in one transaction (a savepoint when the caller already has
one, as ingestion does): the ledger entries, the grants' remaining credits and
the pool's cached balance move together or not at all.

For the ingestion pipeline: :func:`credits_deduct_for_usage` (inside the event's
transaction) and :func:`credits_reverse`. For subscriptions:
:func:`credits_grant_plan_period` at each period start.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.accounts.audit import audit_change
from apps.accounts.models import AuditEntry
from apps.core.errors import Conflict, NotFound, TansoError, ValidationFailed
from apps.core.money import decimal_str
from apps.core.months import add_months
from apps.events.flags import EventFlags

from . import errors
from . import weights as weight_cache
from .amounts import ZERO, quantize_credits
from .ledger import PoolBook, flush_books, lock_books, lock_pool, read_books
from .models import (
    DEFAULT_PRIORITY,
    CreditGrant,
    CreditModel,
    CreditPool,
    CreditPrice,
    CreditTransaction,
    CreditWeight,
    GrantType,
    PlanCreditAllocation,
    RolloverPolicy,
    TransactionType,
    WeightMatch,
)
from .weights import MIN_LEAD, WeightQuote

if TYPE_CHECKING:
    from apps.accounts.audit import Actor
    from apps.accounts.models import Environment
    from apps.customers.models import Customer
    from apps.features.models import Feature

PUBLISH_MAX_ENTRIES = 1000


def actor_label(actor: Actor | None) -> str:
    """Who made a ledger entry, as stored on it (no foreign key: the ledger is immutable)."""
    if actor is None:
        return "system"
    if actor.user is not None:
        return f"user:{actor.user.pk}"
    if actor.api_key_id is not None:
        return f"key:{actor.api_key_id}"
    return "system"


def _positive_credits(value: Decimal, field: str) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValidationFailed(fields={field: ["Must be a decimal number."]})
    rounded = quantize_credits(value)
    if rounded != value:
        raise ValidationFailed(fields={field: ["At most 6 decimal places."]})
    if value <= 0:
        raise ValidationFailed(fields={field: ["Must be greater than 0."]})
    return value


def _constraint_of(exc: IntegrityError) -> str | None:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None)


# -- credit models and plan allocations ----------------------------------------------------


def _validate_rollover(policy: str, cap: Decimal | None) -> None:
    if policy not in RolloverPolicy.values:
        raise ValidationFailed(
            fields={"rolloverPolicy": [f"One of {', '.join(RolloverPolicy.values)}."]}
        )
    if policy == RolloverPolicy.CAPPED:
        if cap is None:
            raise ValidationFailed(fields={"rolloverCap": ["Required with the capped policy."]})
        if cap < 0 or quantize_credits(cap) != cap:
            raise ValidationFailed(
                fields={"rolloverCap": ["A non-negative number, at most 6 decimal places."]}
            )
    elif cap is not None:
        raise ValidationFailed(fields={"rolloverCap": ["Only with the capped policy."]})


@transaction.atomic
def credit_model_create(
    *,
    environment: Environment,
    name: str,
    denomination: str,
    description: str = "",
    hard_limit: bool = True,
    rollover_policy: str = RolloverPolicy.NONE,
    rollover_cap: Decimal | None = None,
    grant_expiry_months: int | None = None,
    metadata: dict[str, Any] | None = None,
    actor: Actor,
) -> CreditModel:
    """Define a denomination; one model per denomination per environment (409 otherwise)."""
    _validate_rollover(rollover_policy, rollover_cap)
    if grant_expiry_months is not None and not 1 <= grant_expiry_months <= 1200:
        raise ValidationFailed(fields={"grantExpiresMonths": ["Between 1 and 1200."]})
    now = timezone.now()
    model = CreditModel(
        environment=environment,
        name=name,
        denomination=denomination,
        description=description,
        hard_limit=hard_limit,
        rollover_policy=rollover_policy,
        rollover_cap=rollover_cap,
        grant_expiry_months=grant_expiry_months,
        metadata=metadata or {},
        created_at=now,
        updated_at=now,
    )
    try:
        with transaction.atomic():
            model.save(force_insert=True)
    except IntegrityError as exc:
        if _constraint_of(exc) == "credit_model_env_denom_unique":
            raise Conflict(
                f"A credit model for {denomination!r} exists already.",
                code=errors.DENOMINATION_EXISTS,
                fields={"denomination": ["Already defined."]},
            ) from None
        raise
    return model


@transaction.atomic
def credit_model_archive(*, credit_model: CreditModel, actor: Actor) -> CreditModel:
    """Stop offering a denomination: no new pools or allocations; existing pools keep working."""
    if credit_model.archived_at is None:
        credit_model.archived_at = timezone.now()
        credit_model.updated_at = credit_model.archived_at
        credit_model.save(update_fields=["archived_at", "updated_at"])
    return credit_model


@transaction.atomic
def plan_allocation_set(
    *,
    environment: Environment,
    plan_key: str,
    credit_model: CreditModel,
    credit_amount: Decimal,
    grant_expiry_months: int | None = None,
    priority: int | None = None,
    actor: Actor,
) -> PlanCreditAllocation:
    """The credits a plan grants per period in one denomination (creates or replaces).

    Takes effect from the next period granted; grants already made are not changed.
    """
    if credit_model.environment_id != environment.pk:
        raise NotFound("No such credit model.")
    if credit_model.archived_at is not None:
        raise ValidationFailed(fields={"creditModelId": ["This credit model is archived."]})
    _positive_credits(credit_amount, "creditAmount")
    if grant_expiry_months is not None and not 1 <= grant_expiry_months <= 1200:
        raise ValidationFailed(fields={"grantExpiresMonths": ["Between 1 and 1200."]})
    values = {
        "credit_amount": credit_amount,
        "grant_expiry_months": grant_expiry_months,
        "priority": priority,
    }
    updated = PlanCreditAllocation.objects.filter(
        environment=environment, plan_key=plan_key, credit_model=credit_model
    ).update(**values)
    if not updated:
        try:
            with transaction.atomic():
                PlanCreditAllocation.objects.create(
                    environment=environment, plan_key=plan_key, credit_model=credit_model, **values
                )
        except IntegrityError:
            # A concurrent set created it first: ours replaces it.
            PlanCreditAllocation.objects.filter(
                environment=environment, plan_key=plan_key, credit_model=credit_model
            ).update(**values)
    return PlanCreditAllocation.objects.select_related("credit_model").get(
        environment=environment, plan_key=plan_key, credit_model=credit_model
    )


@transaction.atomic
def plan_allocation_remove(*, allocation: PlanCreditAllocation, actor: Actor) -> None:
    allocation.delete()


# -- pools ---------------------------------------------------------------------------------


def _pool_ensure_locked(
    *, environment_id: uuid.UUID, customer_id: uuid.UUID, credit_model: CreditModel
) -> CreditPool:
    """The customer's pool of the model's denomination, created if missing, row-locked."""
    CreditPool.objects.bulk_create(
        [
            CreditPool(
                environment_id=environment_id,
                customer_id=customer_id,
                credit_model=credit_model,
                denomination=credit_model.denomination,
                name=credit_model.name,
                hard_limit=credit_model.hard_limit,
                rollover_policy=credit_model.rollover_policy,
                rollover_cap=credit_model.rollover_cap,
                grant_expiry_months=credit_model.grant_expiry_months,
            )
        ],
        ignore_conflicts=True,
    )
    return CreditPool.objects.select_for_update().get(
        environment_id=environment_id,
        customer_id=customer_id,
        denomination=credit_model.denomination,
    )


@transaction.atomic
def credit_pool_ensure(
    *, environment: Environment, customer: Customer, credit_model: CreditModel
) -> CreditPool:
    """One pool per customer and denomination: the existing one, or a new empty one.

    A new pool copies the model's rules (hard limit, rollover, grant expiry).
    """
    if customer.environment_id != environment.pk or credit_model.environment_id != environment.pk:
        raise NotFound("No such customer or credit model.")
    if credit_model.archived_at is not None:
        existing = CreditPool.objects.filter(
            environment=environment, customer=customer, denomination=credit_model.denomination
        ).first()
        if existing is None:
            raise ValidationFailed(fields={"denomination": ["This credit model is archived."]})
        return existing
    return _pool_ensure_locked(
        environment_id=environment.pk, customer_id=customer.pk, credit_model=credit_model
    )


# -- grants --------------------------------------------------------------------------------


def _current_price(
    environment_id: uuid.UUID, denomination: str, at: dt.datetime
) -> CreditPrice | None:
    return (
        CreditPrice.objects.filter(
            environment_id=environment_id, denomination=denomination, effective_from__lte=at
        )
        .order_by("-effective_from")
        .first()
    )


@transaction.atomic
def credit_grant(
    *,
    pool: CreditPool,
    amount: Decimal,
    grant_type: str,
    source_ref: str = "",
    expires_at: dt.datetime | None = None,
    priority: int | None = None,
    actor: Actor | None,
    description: str = "",
    metadata: dict[str, Any] | None = None,
    unit_price: Decimal | None = None,
    currency: str = "",
    granted_at: dt.datetime | None = None,
) -> CreditGrant:
    """Add credits to a pool. Idempotent by ``(pool, grant_type, source_ref)``.

    A replay returns the first grant unchanged (``grant.created`` is False).
    ``priority`` defaults by type (``models.DEFAULT_PRIORITY``; lower is spent
    first). A purchased grant without ``unit_price`` is stamped with the price
    book's price in force. If the pool is in debt (a soft pool below zero), the
    new credits pay the debt first.
    """
    if grant_type not in GrantType.values:
        raise ValidationFailed(fields={"grantType": [f"One of {', '.join(GrantType.values)}."]})
    _positive_credits(amount, "amount")
    if currency and unit_price is None:
        raise ValidationFailed(fields={"currency": ["Only together with unitPrice."]})
    if unit_price is not None and unit_price < 0:
        raise ValidationFailed(fields={"unitPrice": ["Must not be negative."]})
    now = timezone.now()
    if expires_at is not None and expires_at <= now:
        raise ValidationFailed(fields={"expiresAt": ["Must be in the future."]})
    locked = lock_pool(pool.environment_id, pool.pk)
    if source_ref:
        # Under the pool's lock no other grant of this pool can be inserted, so this read
        # is exact; the unique constraint credit_grant_source_unique is the backstop.
        existing = CreditGrant.objects.filter(
            pool_id=locked.pk, grant_type=grant_type, source_ref=source_ref
        ).first()
        if existing is not None:
            existing.created = False  # type: ignore[attr-defined]
            return existing
    if grant_type == GrantType.PURCHASED and unit_price is None:
        price = _current_price(locked.environment_id, locked.denomination, now)
        if price is not None:
            unit_price, currency = price.price_per_credit, price.currency
    if unit_price is not None and not currency:
        currency = "USD"
    book = PoolBook(locked, now=now, actor_label=actor_label(actor))
    book.settle()
    balance_before = locked.balance
    in_debt = locked.balance < 0
    grant = CreditGrant(
        environment_id=locked.environment_id,
        pool=locked,
        grant_type=grant_type,
        amount=amount,
        remaining=amount,
        priority=DEFAULT_PRIORITY[grant_type] if priority is None else priority,
        expires_at=expires_at,
        granted_at=granted_at or now,
        source_ref=source_ref,
        unit_price=unit_price,
        currency=currency.upper(),
        description=description,
        metadata=metadata or {},
        created_by=book.actor_label,
        created_at=now,
    )
    book.add_grant(grant)
    book.post(TransactionType.GRANT, amount, grant=grant, description=description)
    if in_debt:
        book.settle_debt()
    book.flush()
    grant.created = True  # type: ignore[attr-defined]
    if grant_type not in AUTOMATIC_GRANTS:
        _audit(
            locked,
            AuditEntry.Action.CREDITS_GRANTED,
            target=("credit_grant", grant.pk),
            actor=actor,
            detail={
                "grantType": grant_type,
                "amount": amount,
                "expiresAt": expires_at,
                "unitPrice": unit_price,
                "currency": grant.currency,
                "balance": [balance_before, locked.balance],
            },
        )
    return grant


# Grants the billing cycle makes by itself (plan credits per period, rollovers): their
# cause is audited, not each grant.
AUTOMATIC_GRANTS = frozenset({GrantType.PLAN, GrantType.ROLLOVER})


def _audit(
    pool: CreditPool,
    action: str,
    *,
    target: tuple[str, Any],
    actor: Actor | None,
    detail: dict[str, Any],
) -> None:
    """Audit a change made to a pool by hand (a person or a key)."""
    audit_change(
        environment_id=pool.environment_id,
        action=action,
        target_type=target[0],
        target_id=target[1],
        actor=actor,
        detail={"pool": pool.pk, "denomination": pool.denomination, **detail},
    )


@transaction.atomic
def credits_grant_plan_period(
    *,
    environment: Environment,
    customer: Customer,
    plan_key: str,
    period_start: dt.datetime,
    period_end: dt.datetime,
    source_ref: str,
    actor: Actor | None = None,
) -> list[CreditGrant]:
    """Grant a plan's credit allocations for one period; idempotent per period.

    ``source_ref`` names the entitlement (a subscription id): one plan grant per
    (pool, subscription, period start). The pool's period becomes
    ``[period_start, period_end)``; the previous period's rollover is applied
    first if it has ended. Grant expiry: ``period_start`` + the allocation's (or
    the model's) expiry months. Returns the grants (new or replayed).
    """
    if period_end <= period_start:
        raise ValidationFailed(fields={"periodEnd": ["Must be after periodStart."]})
    if customer.environment_id != environment.pk:
        raise NotFound("No such customer.")
    allocations = (
        PlanCreditAllocation.objects.filter(environment=environment, plan_key=plan_key)
        .select_related("credit_model")
        .order_by("credit_model__denomination")
    )
    grants: list[CreditGrant] = []
    now = timezone.now()
    for allocation in allocations:
        model = allocation.credit_model
        pool = _pool_ensure_locked(
            environment_id=environment.pk, customer_id=customer.pk, credit_model=model
        )
        previous_end = pool.current_period_end
        if previous_end is not None and previous_end <= period_start:
            credits_rollover(pool=pool, period_end=previous_end, actor=actor)
            pool.refresh_from_db()
        if pool.current_period_start is None or period_start >= pool.current_period_start:
            CreditPool.objects.filter(pk=pool.pk).update(
                current_period_start=period_start, current_period_end=period_end
            )
        months = allocation.grant_expiry_months or model.grant_expiry_months
        expires_at = add_months(period_start, months) if months else None
        if expires_at is not None and expires_at <= now:
            continue  # a period so far back that its credits have lapsed already
        grants.append(
            credit_grant(
                pool=pool,
                amount=allocation.credit_amount,
                grant_type=GrantType.PLAN,
                source_ref=f"plan:{source_ref}:{period_start.isoformat()}",
                expires_at=expires_at,
                priority=allocation.priority,
                actor=actor,
                description=f"Plan {plan_key}: period from {period_start:%Y-%m-%d}",
                granted_at=min(period_start, now),
            )
        )
    return grants


# -- deductions ----------------------------------------------------------------------------


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
        pool = pools.filter(
            environment_id=environment_id, customer_id=customer_id, denomination=denomination
        ).first()
        if pool is not None or not lock:
            return pool
        model = CreditModel.objects.filter(
            environment_id=environment_id, denomination=denomination
        ).first()
        if model is None:
            raise ValidationFailed(
                f"No credit model for {denomination!r}.", code=errors.UNKNOWN_DENOMINATION
            )
        return _pool_ensure_locked(
            environment_id=environment_id, customer_id=customer_id, credit_model=model
        )
    found = list(pools.filter(environment_id=environment_id, customer_id=customer_id)[:2])
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise errors.DenominationRequired()
    if not lock:
        return None
    models_ = list(
        CreditModel.objects.filter(environment_id=environment_id, archived_at__isnull=True)[:2]
    )
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
    quote = weight_cache.weight_for(environment.pk, feature_id, model or "", occurred_at)
    if quote.match == WeightMatch.NONE and default_credits_per_unit is not None:
        quote = WeightQuote(default_credits_per_unit, None, WeightMatch.NONE)
    credits = quantize_credits(units * quote.credits_per_unit)
    if credits <= 0:
        # Nothing to charge (zero usage): read the balance, take no lock.
        found = _resolve_usage_pool(environment.pk, customer_id, denomination, lock=False)
        if found is None:
            return DeductionResult(ZERO, ZERO, None, None, False, credits, quote)
        return DeductionResult(ZERO, ZERO, found, found.balance, found.hard_limit, credits, quote)
    key = f"event:{event_ref}"
    if denomination:
        fields = {
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
        args: dict[str, Any] = {
            "environment_id": environment.pk,
            "customer_id": customer_id,
            "denomination": denomination,
            "key": key,
            "credits": credits,
            "quote": quote,
            "fields": fields,
        }
        if connection.in_atomic_block:
            done = _deduct_usage_locked(**args)
        else:
            with transaction.atomic():
                done = _deduct_usage_locked(**args)
        if done is not None:
            return done
    pool: CreditPool | None = None
    try:
        with transaction.atomic():
            pool = _resolve_usage_pool(environment.pk, customer_id, denomination)
            if pool is None:
                return DeductionResult(ZERO, ZERO, None, None, False, credits, quote)
            book = PoolBook(pool, now=timezone.now(), actor_label="system")
            book.settle()
            entry = _deduct(
                book,
                credits,
                idempotency_key=key,
                event_ref=event_ref,
                feature_id=feature_id,
                model=model or "",
                units=units,
                credits_per_unit=quote.credits_per_unit,
                weight_id=quote.weight_id,
                weight_match=quote.match,
                description="Usage",
            )
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
    quotes = []
    for charge in charges:
        if charge.units < 0:
            raise ValidationFailed(fields={"usageUnits": ["Must not be negative."]})
        quote = weight_cache.weight_for(
            env_id, charge.feature_id, charge.model or "", charge.occurred_at
        )
        if quote.match == WeightMatch.NONE and charge.default_credits_per_unit is not None:
            quote = WeightQuote(charge.default_credits_per_unit, None, WeightMatch.NONE)
        quotes.append((quote, quantize_credits(charge.units * quote.credits_per_unit)))
    wanted = {(c.customer_id, c.denomination) for c in charges}
    probe_keys = keys if keys is not None else [""] * len(charges)  # "": no probe
    found = lock_books(
        env_id,
        [(c.customer_id, c.denomination, k) for c, k in zip(charges, probe_keys, strict=True)],
    )
    pools = found.pools
    replayed = found.used_keys
    grants = found.grants
    missing = sorted(wanted - set(pools), key=lambda pair: (str(pair[0]), pair[1]))
    if missing:
        models_ = {
            m.denomination: m
            for m in CreditModel.objects.filter(
                environment_id=env_id, denomination__in={d for _, d in missing}
            )
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
            replayed |= more.used_keys
            grants.update(more.grants)
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
        if credits <= 0:
            results[index] = DeductionResult(
                ZERO, ZERO, pool, pool.balance, pool.hard_limit, credits, quote
            )
            continue
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
        entries[index] = entry
        if key:
            replayed.add((pool.pk, key))  # the same event twice in one batch: once
        results[index] = DeductionResult(
            -entry.amount,
            entry.shortfall,
            pool,
            entry.balance_after,
            pool.hard_limit,
            credits,
            quote,
            entry.pk,
        )
    assert all(r is not None for r in results)
    return PreparedUsage(
        list(books.values()),
        results,  # type: ignore[arg-type]
        entries,
        pool_ids,
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


# -- reversal ------------------------------------------------------------------------------


def _reverse_locked(
    book: PoolBook, original: CreditTransaction, description: str
) -> CreditTransaction:
    """Post the reversal of a deduction and give its credits back to the grants it drew on.

    Credits return to their grants; a grant that has lapsed since (expired, or
    closed by a rollover) gets them back and loses them at once (an expiration).
    The part no grant backed (a soft pool's debt) simply stops being owed.
    Restored credits then pay any other debt of the pool.
    """
    was_in_debt = book.pool.balance < 0
    restored = original.consumptions.values_list("grant_id", "amount")
    per_grant: dict[uuid.UUID, Decimal] = {}
    for grant_id, amount in restored:
        per_grant[grant_id] = per_grant.get(grant_id, ZERO) + amount
    entry = book.post(
        TransactionType.REVERSAL,
        -original.amount,
        reversed_transaction=original,
        event_ref=original.event_ref,
        description=description or f"Reversal of entry #{original.sequence}",
    )
    grants = {g.pk: g for g in CreditGrant.objects.filter(pk__in=list(per_grant))}
    for grant_id in sorted(per_grant, key=str):
        grant = book.attach_grant(grants[grant_id])
        amount = per_grant[grant_id]
        book.give(grant, amount)
        if not grant.is_live(book.now):
            book.post(
                TransactionType.EXPIRATION,
                -amount,
                grant=grant,
                description="Reversed credits of a lapsed grant",
            )
            book.take(grant, amount)
    if was_in_debt:
        book.exclude_from_settlement.add(original.pk)
        book.settle_debt()
    return entry


def credits_reverse(
    *,
    environment: Environment,
    transaction_id: uuid.UUID | str | None = None,
    event_ref: str | None = None,
    actor: Actor | None,
    description: str = "",
) -> CreditTransaction | None:
    """Reverse a deduction: by ledger entry id, or the deduction made for an event.

    By ``transaction_id``: an entry that is not a deduction is 409
    ``not_reversible``; one reversed already is 409 ``already_reversed``.
    By ``event_ref`` (for ingestion): idempotent, the existing reversal is
    returned; None when the event caused no deduction.
    """
    if (transaction_id is None) == (event_ref is None):
        raise ValueError("give exactly one of transaction_id and event_ref")
    with transaction.atomic():
        lookup = CreditTransaction.objects.filter(environment_id=environment.pk)
        if transaction_id is not None:
            try:
                original = lookup.get(pk=transaction_id)
            except (
                CreditTransaction.DoesNotExist,
                ValueError,
                TypeError,
                DjangoValidationError,
            ):
                raise NotFound("No such credit transaction.") from None
        else:
            by_event = lookup.filter(
                event_ref=event_ref, transaction_type=TransactionType.DEDUCTION
            ).first()
            if by_event is None:
                return None
            original = by_event
        if original.transaction_type != TransactionType.DEDUCTION:
            raise Conflict("Only deductions can be reversed.", code=errors.NOT_REVERSIBLE)
        pool = lock_pool(environment.pk, original.pool_id)
        existing = CreditTransaction.objects.filter(reversed_transaction=original).first()
        if existing is not None:
            if event_ref is not None:
                return existing
            raise Conflict(
                "This deduction has been reversed already.", code=errors.ALREADY_REVERSED
            )
        book = PoolBook(pool, now=timezone.now(), actor_label=actor_label(actor))
        book.settle()
        balance_before = pool.balance
        entry = _reverse_locked(book, original, description)
        book.flush()
        if transaction_id is not None:  # by hand; an event's reversal follows its event
            _audit(
                pool,
                AuditEntry.Action.CREDITS_REVERSED,
                target=("credit_transaction", entry.pk),
                actor=actor,
                detail={
                    "reversed": original.pk,
                    "amount": -original.amount,
                    "balance": [balance_before, pool.balance],
                },
            )
    return entry


# -- rollover and expiry -------------------------------------------------------------------


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


# -- weights and prices --------------------------------------------------------------------


@dataclass(frozen=True)
class WeightEntry:
    feature: Feature
    model: str  # "" = every model of the feature
    credits_per_unit: Decimal


def _check_publish_instant(effective_from: dt.datetime, now: dt.datetime) -> None:
    if effective_from.tzinfo is None:
        raise ValidationFailed(fields={"effectiveFrom": ["Give a time zone (e.g. Z)."]})
    if effective_from < now + MIN_LEAD:
        raise ValidationFailed(
            fields={
                "effectiveFrom": [
                    f"Must be at least {int(MIN_LEAD.total_seconds())} seconds in the future: "
                    "values in force are never changed."
                ]
            }
        )


def _announce_weights(environment_id: uuid.UUID) -> None:
    weight_cache.weights_changed(environment_id)
    transaction.on_commit(lambda: weight_cache.weights_changed(environment_id))


@transaction.atomic
def credit_weights_publish(
    *,
    environment: Environment,
    effective_from: dt.datetime,
    entries: Sequence[WeightEntry],
    actor: Actor | None,
) -> list[CreditWeight]:
    """Publish a batch of weights, all in force from ``effective_from`` (in the future).

    Weights in force are never changed: a new value is a new row at a later
    instant. Replaying the same batch at the same instant is a no-op (the
    existing rows are returned); a different batch at that instant is 409
    ``weight_conflict``.
    """
    now = timezone.now()
    _check_publish_instant(effective_from, now)
    if not entries:
        raise ValidationFailed(fields={"entries": ["At least one entry."]})
    if len(entries) > PUBLISH_MAX_ENTRIES:
        raise ValidationFailed(fields={"entries": [f"At most {PUBLISH_MAX_ENTRIES} entries."]})
    wanted: dict[tuple[uuid.UUID, str], Decimal] = {}
    for index, entry in enumerate(entries):
        if entry.feature.environment_id != environment.pk:
            raise ValidationFailed(fields={f"entries.{index}.featureKey": ["Unknown feature."]})
        value = entry.credits_per_unit
        if not value.is_finite() or value <= 0 or value > 1_000_000:
            raise ValidationFailed(
                fields={f"entries.{index}.creditsPerUnit": ["Between 0 (excluded) and 1000000."]}
            )
        if value.quantize(Decimal("0.000001")) != value:
            raise ValidationFailed(
                fields={f"entries.{index}.creditsPerUnit": ["At most 6 decimal places."]}
            )
        key = (entry.feature.pk, entry.model)
        if key in wanted:
            raise ValidationFailed(
                fields={f"entries.{index}": ["The same feature and model twice in one batch."]}
            )
        wanted[key] = value
    existing = list(
        CreditWeight.objects.filter(environment=environment, effective_from=effective_from)
    )
    if existing:
        have = {(w.feature_id, w.model): w.credits_per_unit for w in existing}
        if have == wanted:
            return existing
        raise Conflict(
            "Another batch of weights is published for this instant.",
            code=errors.WEIGHT_CONFLICT,
        )
    batch = uuid.uuid4()
    label = actor_label(actor)
    rows = [
        CreditWeight(
            environment=environment,
            feature_id=feature_id,
            model=model,
            credits_per_unit=value,
            effective_from=effective_from,
            batch_id=batch,
            created_by=label,
            created_at=now,
        )
        for (feature_id, model), value in wanted.items()
    ]
    try:
        with transaction.atomic():
            CreditWeight.objects.bulk_create(rows)
    except IntegrityError:
        raise Conflict(
            "Another batch of weights was published for this instant.",
            code=errors.WEIGHT_CONFLICT,
        ) from None
    _announce_weights(environment.pk)
    return rows


@transaction.atomic
def credit_weight_withdraw(*, weight: CreditWeight, actor: Actor | None) -> None:
    """Withdraw a weight that is not in force yet (409 ``weight_in_force`` otherwise).

    Refused within ``MIN_LEAD`` of its instant too, so that no process's cache
    can have used it.
    """
    if weight.effective_from < timezone.now() + MIN_LEAD:
        raise Conflict(
            "This weight is in force (or about to be); publish a new one instead.",
            code=errors.WEIGHT_IN_FORCE,
        )
    environment_id = weight.environment_id
    weight.delete()
    _announce_weights(environment_id)


@dataclass(frozen=True)
class PriceEntry:
    denomination: str
    currency: str
    price_per_credit: Decimal


@transaction.atomic
def credit_prices_publish(
    *,
    environment: Environment,
    effective_from: dt.datetime,
    entries: Sequence[PriceEntry],
    actor: Actor | None,
) -> list[CreditPrice]:
    """Publish prices per credit, in force from ``effective_from`` (in the future).

    Same rules as weights: never changed once published; the same batch again is a
    no-op; another batch at the same instant is 409 ``price_conflict``. Every
    denomination must have a credit model.
    """
    now = timezone.now()
    _check_publish_instant(effective_from, now)
    if not entries:
        raise ValidationFailed(fields={"entries": ["At least one entry."]})
    if len(entries) > PUBLISH_MAX_ENTRIES:
        raise ValidationFailed(fields={"entries": [f"At most {PUBLISH_MAX_ENTRIES} entries."]})
    known = set(
        CreditModel.objects.filter(environment=environment).values_list("denomination", flat=True)
    )
    wanted: dict[str, tuple[str, Decimal]] = {}
    for index, entry in enumerate(entries):
        if entry.denomination not in known:
            raise ValidationFailed(
                fields={f"entries.{index}.denomination": ["No credit model has it."]}
            )
        if entry.denomination in wanted:
            raise ValidationFailed(
                fields={f"entries.{index}.denomination": ["Twice in one batch."]}
            )
        price = entry.price_per_credit
        if not price.is_finite() or price <= 0:
            raise ValidationFailed(
                fields={f"entries.{index}.pricePerCredit": ["Must be greater than 0."]}
            )
        wanted[entry.denomination] = (entry.currency.upper(), price)
    existing = list(
        CreditPrice.objects.filter(environment=environment, effective_from=effective_from)
    )
    if existing:
        have = {p.denomination: (p.currency, p.price_per_credit) for p in existing}
        if have == wanted:
            return existing
        raise Conflict("Other prices are published for this instant.", code=errors.PRICE_CONFLICT)
    batch = uuid.uuid4()
    label = actor_label(actor)
    rows = [
        CreditPrice(
            environment=environment,
            denomination=denomination,
            currency=currency,
            price_per_credit=price,
            effective_from=effective_from,
            batch_id=batch,
            created_by=label,
            created_at=now,
        )
        for denomination, (currency, price) in wanted.items()
    ]
    try:
        with transaction.atomic():
            CreditPrice.objects.bulk_create(rows)
    except IntegrityError:
        raise Conflict(
            "Other prices were published for this instant.", code=errors.PRICE_CONFLICT
        ) from None
    return rows


__all__ = [
    "DeductionResult",
    "PriceEntry",
    "SettleResult",
    "WeightEntry",
    "WeightMatch",
    "credit_grant",
    "credit_model_archive",
    "credit_model_create",
    "credit_pool_ensure",
    "credit_prices_publish",
    "credit_weight_withdraw",
    "credit_weights_publish",
    "credits_commit_usage",
    "credits_deduct",
    "credits_deduct_for_usage",
    "credits_grant_plan_period",
    "credits_prepare_usage",
    "credits_reverse",
    "credits_rollover",
    "credits_settle_pool",
    "plan_allocation_remove",
    "plan_allocation_set",
]
