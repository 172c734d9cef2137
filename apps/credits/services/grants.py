"""Grants: credits added to a pool, by hand, by purchase, or by a plan at each period start."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from apps.accounts.models import AuditEntry
from apps.core.errors import NotFound, ValidationFailed
from apps.core.months import add_months
from apps.core.tenancy import scoped
from apps.credits.ledger import PoolBook, lock_pool
from apps.credits.models import (
    DEFAULT_PRIORITY,
    CreditGrant,
    CreditPool,
    CreditPrice,
    GrantType,
    PlanCreditAllocation,
    TransactionType,
)

from .audit import _audit, actor_label
from .checks import _positive_credits
from .pools import _pool_ensure_locked
from .rollover import credits_rollover

if TYPE_CHECKING:
    from apps.accounts.audit import Actor
    from apps.accounts.models import Environment
    from apps.customers.models import Customer


def _current_price(
    environment_id: uuid.UUID, denomination: str, at: dt.datetime
) -> CreditPrice | None:
    return (
        scoped(CreditPrice, environment_id)
        .filter(denomination=denomination, effective_from__lte=at)
        .order_by("-effective_from")
        .first()
    )


def _check_grant(
    *,
    grant_type: str,
    amount: Decimal,
    unit_price: Decimal | None,
    currency: str,
    expires_at: dt.datetime | None,
    now: dt.datetime,
) -> None:
    if grant_type not in GrantType.values:
        raise ValidationFailed(fields={"grantType": [f"One of {', '.join(GrantType.values)}."]})
    _positive_credits(amount, "amount")
    if currency and unit_price is None:
        raise ValidationFailed(fields={"currency": ["Only together with unitPrice."]})
    if unit_price is not None and unit_price < 0:
        raise ValidationFailed(fields={"unitPrice": ["Must not be negative."]})
    if expires_at is not None and expires_at <= now:
        raise ValidationFailed(fields={"expiresAt": ["Must be in the future."]})


def _grant_price(
    pool: CreditPool,
    grant_type: str,
    unit_price: Decimal | None,
    currency: str,
    now: dt.datetime,
) -> tuple[Decimal | None, str]:
    """A purchased grant without a price gets the price book's price in force; a priced
    grant without a currency is in USD."""
    if grant_type == GrantType.PURCHASED and unit_price is None:
        price = _current_price(pool.environment_id, pool.denomination, now)
        if price is not None:
            unit_price, currency = price.price_per_credit, price.currency
    if unit_price is not None and not currency:
        currency = "USD"
    return unit_price, currency


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
    now = timezone.now()
    _check_grant(
        grant_type=grant_type,
        amount=amount,
        unit_price=unit_price,
        currency=currency,
        expires_at=expires_at,
        now=now,
    )
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
    unit_price, currency = _grant_price(locked, grant_type, unit_price, currency, now)
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
        _audit_grant(locked, grant, actor=actor, balance_before=balance_before)
    return grant


def _audit_grant(
    pool: CreditPool, grant: CreditGrant, *, actor: Actor | None, balance_before: Decimal
) -> None:
    _audit(
        pool,
        AuditEntry.Action.CREDITS_GRANTED,
        target=("credit_grant", grant.pk),
        actor=actor,
        detail={
            "grantType": grant.grant_type,
            "amount": grant.amount,
            "expiresAt": grant.expires_at,
            "unitPrice": grant.unit_price,
            "currency": grant.currency,
            "balance": [balance_before, pool.balance],
        },
    )


# Grants the billing cycle makes by itself (plan credits per period, rollovers): their
# cause is audited, not each grant.
AUTOMATIC_GRANTS = frozenset({GrantType.PLAN, GrantType.ROLLOVER})


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
        scoped(PlanCreditAllocation, environment)
        .filter(plan_key=plan_key)
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
