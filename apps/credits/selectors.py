"""Reads for credits; every function takes the environment first."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from apps.core.errors import NotFound
from apps.core.tenancy import get_scoped_or_404, scoped
from apps.features.models import Feature

from . import weights as weight_cache
from .amounts import CREDIT_QUANTUM, ZERO, quantize_credits
from .models import (
    CreditGrant,
    CreditModel,
    CreditPool,
    CreditPrice,
    CreditTransaction,
    CreditWeight,
    PlanCreditAllocation,
    TransactionType,
)
from .weights import WeightQuote

if TYPE_CHECKING:
    from apps.accounts.models import Environment
    from apps.customers.models import Customer

# Average daily burn is measured over at most this many recent days.
BURN_WINDOW_DAYS = 30
MAX_PROJECTION_DAYS = 36_500


# -- models and allocations ----------------------------------------------------------------


def credit_models_for(environment: Environment) -> QuerySet[CreditModel]:
    return scoped(CreditModel, environment)


def credit_model_get(environment: Environment, model_id: object) -> CreditModel:
    try:
        return get_scoped_or_404(CreditModel, environment, pk=model_id)
    except NotFound:
        raise NotFound("No such credit model.") from None


def credit_model_by_denomination(environment: Environment, denomination: str) -> CreditModel:
    try:
        return get_scoped_or_404(CreditModel, environment, denomination=denomination)
    except NotFound:
        raise NotFound(f"No credit model for {denomination!r}.") from None


def allocations_for(
    environment: Environment, plan_key: str | None = None
) -> QuerySet[PlanCreditAllocation]:
    queryset = scoped(PlanCreditAllocation, environment).select_related("credit_model")
    if plan_key is not None:
        queryset = queryset.filter(plan_key=plan_key)
    return queryset


def allocation_get(environment: Environment, allocation_id: object) -> PlanCreditAllocation:
    try:
        return get_scoped_or_404(allocations_for(environment), environment, pk=allocation_id)
    except NotFound:
        raise NotFound("No such credit allocation.") from None


# -- pools ---------------------------------------------------------------------------------


def customer_pools(environment: Environment, customer: Customer) -> QuerySet[CreditPool]:
    return scoped(CreditPool, environment).filter(customer=customer).order_by("denomination")


def pool_get(environment: Environment, customer: Customer, pool_id: object) -> CreditPool:
    """One of the customer's pools (404 for another customer's, or another tenant's)."""
    try:
        return get_scoped_or_404(CreditPool, environment, pk=pool_id, customer=customer)
    except NotFound:
        raise NotFound("No such credit pool.") from None


def pool_get_by_id(environment: Environment, pool_id: object) -> CreditPool:
    try:
        return get_scoped_or_404(
            CreditPool.objects.select_related("customer"), environment, pk=pool_id
        )
    except NotFound:
        raise NotFound("No such credit pool.") from None


def feature_by_id(environment: Environment, feature_id: object) -> Feature:
    try:
        return get_scoped_or_404(Feature, environment, pk=feature_id)
    except NotFound:
        raise NotFound("No such feature.") from None


def pool_grants(pool: CreditPool) -> QuerySet[CreditGrant]:
    return scoped(CreditGrant, pool.environment_id).filter(pool=pool)


def pool_transactions(pool: CreditPool) -> QuerySet[CreditTransaction]:
    return scoped(CreditTransaction, pool.environment_id).filter(pool=pool)


@dataclass(frozen=True)
class PoolBalance:
    pool_id: uuid.UUID
    denomination: str
    balance: Decimal  # the ledger's sum
    available: Decimal  # spendable now: live grants (0 when the balance is negative)
    hard_limit: bool

    def can_cover(self, credits: Decimal) -> bool:
        """Whether a charge of ``credits`` would be covered in full (soft pools always are)."""
        return not self.hard_limit or self.available >= credits


def pool_balance(
    environment: Environment, *, customer_id: uuid.UUID, denomination: str
) -> PoolBalance | None:
    """A customer's balance in one denomination (None without a pool). Two queries.

    ``available`` leaves out grants that lapsed and that the expiry task has not
    processed yet, so a check never promises credits a deduction would not find.
    """
    pool = (
        scoped(CreditPool, environment)
        .filter(customer_id=customer_id, denomination=denomination)
        .first()
    )
    if pool is None:
        return None
    now = timezone.now()
    live = (
        CreditGrant.objects.filter(pool=pool, remaining__gt=0, closed_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .aggregate(total=Sum("remaining"))["total"]
    )
    available = (live or ZERO) if pool.balance > 0 else ZERO
    return PoolBalance(pool.pk, pool.denomination, pool.balance, available, pool.hard_limit)


# -- weights, prices and quotes ------------------------------------------------------------


def weights_in_force(environment: Environment, at: dt.datetime) -> list[CreditWeight]:
    """For each (feature, model), the weight in force at ``at``."""
    return list(
        scoped(CreditWeight, environment)
        .filter(effective_from__lte=at)
        .select_related("feature")
        .order_by("feature_id", "model", "-effective_from")
        .distinct("feature_id", "model")
    )


def weights_scheduled(environment: Environment, after: dt.datetime) -> list[CreditWeight]:
    """Weights published for an instant after ``after`` (not yet in force)."""
    return list(
        scoped(CreditWeight, environment)
        .filter(effective_from__gt=after)
        .select_related("feature")
        .order_by("effective_from", "feature__key", "model")
    )


def weight_get(environment: Environment, weight_id: object) -> CreditWeight:
    try:
        return get_scoped_or_404(CreditWeight, environment, pk=weight_id)
    except NotFound:
        raise NotFound("No such credit weight.") from None


def prices_in_force(environment: Environment, at: dt.datetime) -> list[CreditPrice]:
    """The price book at ``at``: one price per denomination."""
    return list(
        scoped(CreditPrice, environment)
        .filter(effective_from__lte=at)
        .order_by("denomination", "-effective_from")
        .distinct("denomination")
    )


@dataclass(frozen=True)
class CreditQuote:
    credits: Decimal
    weight: WeightQuote
    price_per_credit: Decimal | None
    currency: str | None

    @property
    def estimated_cost(self) -> Decimal | None:
        if self.price_per_credit is None:
            return None
        return self.credits * self.price_per_credit


def credit_quote(
    environment: Environment,
    *,
    feature_id: uuid.UUID,
    model: str | None,
    units: Decimal,
    denomination: str | None = None,
    at: dt.datetime | None = None,
) -> CreditQuote:
    """What ``units`` of a feature would cost in credits now (a quote, not a promise:
    the charge uses the weight in force when the event occurs)."""
    at = at or timezone.now()
    quote = weight_cache.weight_for(environment.pk, feature_id, model or "", at)
    credits = quantize_credits(units * quote.credits_per_unit)
    price = None
    if denomination:
        price = (
            scoped(CreditPrice, environment)
            .filter(denomination=denomination, effective_from__lte=at)
            .order_by("-effective_from")
            .first()
        )
    return CreditQuote(
        credits,
        quote,
        price.price_per_credit if price else None,
        price.currency if price else None,
    )


# -- burndown ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolUsage:
    pool: CreditPool
    consumed_in_window: Decimal  # net credits used (deductions less reversals)
    window_days: Decimal
    average_daily_burn: Decimal
    projected_depletion_date: dt.date | None
    price: CreditPrice | None


def customer_credit_usage(
    environment: Environment, customer: Customer, *, now: dt.datetime | None = None
) -> list[PoolUsage]:
    """Per pool: balance, average daily burn and projected depletion date. Three queries.

    Burn: net credits used (deductions less their reversals) over the last
    ``BURN_WINDOW_DAYS`` days, or since the pool was created if that is more
    recent, divided by that span in days (at least one day). Depletion: the
    date the balance reaches zero at that pace (today if it has already; None
    when nothing is being used).
    """
    return credit_usage_by_customer(environment, [customer], now=now).get(customer.pk, [])


def credit_usage_by_customer(
    environment: Environment, customers: Sequence[Customer], *, now: dt.datetime | None = None
) -> dict[uuid.UUID, list[PoolUsage]]:
    """:func:`customer_credit_usage` of many customers at once (a page of them): the
    same three queries whatever their number. Customers without a pool are absent."""
    now = now or timezone.now()
    pools = list(
        scoped(CreditPool, environment)
        .filter(customer_id__in=[customer.pk for customer in customers])
        .order_by("customer_id", "denomination")
    )
    if not pools:
        return {}
    window_start = now - dt.timedelta(days=BURN_WINDOW_DAYS)
    used = dict(
        scoped(CreditTransaction, environment.pk)
        .filter(
            pool__in=pools,
            created_at__gte=window_start,
            transaction_type__in=[TransactionType.DEDUCTION, TransactionType.REVERSAL],
        )
        .values("pool_id")
        .annotate(net=Sum("amount"))
        .values_list("pool_id", "net")
    )
    prices = {price.denomination: price for price in prices_in_force(environment, now)}
    result: dict[uuid.UUID, list[PoolUsage]] = {}
    for pool in pools:
        consumed = max(-(used.get(pool.pk) or ZERO), ZERO)
        start = max(pool.created_at, window_start)
        seconds = Decimal(max((now - start).total_seconds(), 86_400))
        days = seconds / Decimal(86_400)
        burn = (consumed / days).quantize(CREDIT_QUANTUM, rounding=ROUND_HALF_EVEN)
        if pool.balance <= 0:
            depletion: dt.date | None = now.date()
        elif burn > 0 and (days_left := math.ceil(pool.balance / burn)) <= MAX_PROJECTION_DAYS:
            depletion = (now + dt.timedelta(days=days_left)).date()
        else:
            depletion = None  # nothing used, or not within a century at this pace
        result.setdefault(pool.customer_id, []).append(
            PoolUsage(
                pool=pool,
                consumed_in_window=consumed,
                window_days=days.quantize(Decimal("0.01")),
                average_daily_burn=burn,
                projected_depletion_date=depletion,
                price=prices.get(pool.denomination),
            )
        )
    return result
