"""Credits fixtures: a credit model, a customer and a feature per environment, and the
ledger invariants every test can assert."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Sum
from django.utils import timezone

from apps.accounts.audit import Actor
from apps.core import memo
from apps.credits.models import (
    CreditConsumption,
    CreditGrant,
    CreditModel,
    CreditPool,
    CreditTransaction,
    TransactionType,
)
from apps.credits.services import credit_grant, credit_model_create, credit_pool_ensure
from apps.features.models import Feature
from tests.factories import make_customer

D = Decimal
SYSTEM = Actor.system()


@pytest.fixture(autouse=True)
def _fresh_weight_cache() -> Iterator[None]:
    memo.clear_all()
    yield
    memo.clear_all()


def make_model(environment: Any, denomination: str = "AI_CREDITS", **kwargs: Any) -> CreditModel:
    kwargs.setdefault("name", denomination.replace("_", " ").title())
    return credit_model_create(
        environment=environment, denomination=denomination, actor=SYSTEM, **kwargs
    )


def make_feature(environment: Any, key: str = "summarize") -> Feature:
    return Feature.objects.create(environment=environment, key=key)


def make_pool(
    environment: Any,
    reference_id: str = "cus_1",
    denomination: str = "AI_CREDITS",
    **model_kwargs: Any,
) -> CreditPool:
    from apps.customers.models import Customer

    customer = Customer.objects.filter(environment=environment, reference_id=reference_id).first()
    customer = customer or make_customer(environment, reference_id)
    model = CreditModel.objects.filter(environment=environment, denomination=denomination).first()
    model = model or make_model(environment, denomination, **model_kwargs)
    return credit_pool_ensure(environment=environment, customer=customer, credit_model=model)


def grant(
    pool: CreditPool, amount: str | Decimal, grant_type: str = "manual", **kwargs: Any
) -> CreditGrant:
    return credit_grant(pool=pool, amount=D(amount), grant_type=grant_type, actor=SYSTEM, **kwargs)


def in_days(days: float) -> dt.datetime:
    return timezone.now() + dt.timedelta(days=days)


def lapse(grant_: CreditGrant) -> None:
    """Move a grant's expiry into the past (grants, unlike the ledger, may be updated)."""
    CreditGrant.objects.filter(pk=grant_.pk).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )


def assert_ledger_consistent(pool: CreditPool) -> None:
    """The invariants of a pool: an unbroken, correctly summed ledger; the cached balance
    and totals equal to it; the grants holding exactly the balance (or, for a pool in debt,
    nothing, with the debt equal to the deductions no grant backs)."""
    pool.refresh_from_db()
    entries = list(CreditTransaction.objects.filter(pool=pool).order_by("sequence"))
    running = D(0)
    totals = {kind: D(0) for kind in TransactionType.values}
    for number, entry in enumerate(entries, start=1):
        assert entry.sequence == number
        assert entry.balance_before == running, entry
        running += entry.amount
        assert entry.balance_after == running, entry
        totals[entry.transaction_type] += entry.amount
    assert pool.balance == running
    assert pool.last_sequence == len(entries)
    assert pool.total_granted == totals["grant"]
    assert pool.total_consumed == -totals["deduction"]
    assert pool.total_expired == -totals["expiration"]
    assert pool.total_reversed == totals["reversal"]
    assert pool.total_adjusted == totals["adjustment"]
    if pool.hard_limit:
        assert pool.balance >= 0
    held = CreditGrant.objects.filter(pool=pool).aggregate(s=Sum("remaining"))["s"] or D(0)
    backed_by = dict(
        CreditConsumption.objects.filter(transaction__pool=pool)
        .values("transaction_id")
        .annotate(s=Sum("amount"))
        .values_list("transaction_id", "s")
    )
    reversed_ids = {e.reversed_transaction_id for e in entries if e.reversed_transaction_id}
    unbacked = D(0)
    for entry in entries:
        if entry.transaction_type != "deduction":
            continue
        backed = backed_by.get(entry.pk, D(0))
        assert backed <= -entry.amount
        if entry.pk not in reversed_ids:
            unbacked += -entry.amount - backed
    if pool.balance >= 0:
        assert held == pool.balance, (held, pool.balance)
        assert unbacked == 0
    else:
        assert held == 0
        assert unbacked == -pool.balance
    # Each grant: what came in, less what was drawn (net of reversals), expired or moved out.
    drawn: dict[Any, Decimal] = {}
    for grant_id, transaction_id, amount in CreditConsumption.objects.filter(
        transaction__pool=pool
    ).values_list("grant_id", "transaction_id", "amount"):
        if transaction_id not in reversed_ids:
            drawn[grant_id] = drawn.get(grant_id, D(0)) + amount
    taken: dict[Any, Decimal] = {}
    for entry in entries:
        if entry.grant_id and entry.amount < 0:
            taken[entry.grant_id] = taken.get(entry.grant_id, D(0)) - entry.amount
    for row in CreditGrant.objects.filter(pool=pool):
        assert 0 <= row.remaining <= row.amount
        expected = row.amount - drawn.get(row.pk, D(0)) - taken.get(row.pk, D(0))
        assert row.remaining == expected, (row, expected)
