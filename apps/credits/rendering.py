"""JSON shapes of the credits API (camelCase, amounts as decimal strings by the renderer)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .models import (
    CreditGrant,
    CreditModel,
    CreditPool,
    CreditPrice,
    CreditTransaction,
    CreditWeight,
    PlanCreditAllocation,
)
from .selectors import PoolUsage


def render_credit_model(model: CreditModel) -> dict[str, Any]:
    return {
        "id": model.pk,
        "name": model.name,
        "denomination": model.denomination,
        "description": model.description,
        "hardLimit": model.hard_limit,
        "rolloverPolicy": model.rollover_policy,
        "rolloverCap": model.rollover_cap,
        "grantExpiresMonths": model.grant_expiry_months,
        "metadata": model.metadata,
        "archivedAt": model.archived_at,
        "createdAt": model.created_at,
        "modifiedAt": model.updated_at,
    }


def render_allocation(allocation: PlanCreditAllocation) -> dict[str, Any]:
    model = allocation.credit_model
    return {
        "id": allocation.pk,
        "planKey": allocation.plan_key,
        "creditModelId": model.pk,
        "creditModelName": model.name,
        "denomination": model.denomination,
        "creditAmount": allocation.credit_amount,
        "grantExpiresMonths": allocation.grant_expiry_months,
        "hardLimit": model.hard_limit,
        "priority": allocation.priority,
        "createdAt": allocation.created_at,
    }


def render_pool(pool: CreditPool, customer_reference_id: str) -> dict[str, Any]:
    return {
        "id": pool.pk,
        "customerReferenceId": customer_reference_id,
        "name": pool.name,
        "denomination": pool.denomination,
        "creditModelId": pool.credit_model_id,
        "balance": pool.balance,
        "totalGranted": pool.total_granted,
        "totalConsumed": pool.total_consumed,
        "totalExpired": pool.total_expired,
        "totalReversed": pool.total_reversed,
        "hardLimit": pool.hard_limit,
        "rolloverPolicy": pool.rollover_policy,
        "rolloverCap": pool.rollover_cap,
        "grantExpiresMonths": pool.grant_expiry_months,
        "status": "active" if pool.balance > 0 else "depleted",
        "currentPeriodStart": pool.current_period_start,
        "currentPeriodEnd": pool.current_period_end,
        "metadata": pool.metadata,
        "createdAt": pool.created_at,
        "modifiedAt": pool.updated_at,
    }


def grant_status(grant: CreditGrant, now: dt.datetime) -> str:
    if grant.closed_at is not None:
        return "closed"
    if grant.expires_at is not None and grant.expires_at <= now:
        return "expired"
    return "active" if grant.remaining > 0 else "spent"


def render_grant(grant: CreditGrant, now: dt.datetime) -> dict[str, Any]:
    return {
        "id": grant.pk,
        "creditPoolId": grant.pool_id,
        "grantType": grant.grant_type,
        "amount": grant.amount,
        "remaining": grant.remaining,
        "priority": grant.priority,
        "expiresAt": grant.expires_at,
        "grantedAt": grant.granted_at,
        "status": grant_status(grant, now),
        "idempotencyKey": grant.source_ref or None,
        "unitPrice": grant.unit_price,
        "currency": grant.currency or None,
        "description": grant.description,
        "metadata": grant.metadata,
        "closedAt": grant.closed_at,
        "createdAt": grant.created_at,
    }


def render_transaction(entry: CreditTransaction) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": entry.pk,
        "creditPoolId": entry.pool_id,
        "sequence": entry.sequence,
        "transactionType": entry.transaction_type,
        "amount": entry.amount,
        "balanceBefore": entry.balance_before,
        "balanceAfter": entry.balance_after,
        "creditGrantId": entry.grant_id,
        "reversedTransactionId": entry.reversed_transaction_id,
        "idempotencyKey": entry.idempotency_key or None,
        "eventRef": entry.event_ref or None,
        "description": entry.description,
        "metadata": entry.metadata,
        "createdBy": entry.created_by,
        "createdAt": entry.created_at,
    }
    if entry.transaction_type == "deduction":
        body.update(
            {
                "requestedCredits": entry.requested,
                "creditShortfall": entry.shortfall,
                "insufficientCredits": entry.shortfall > 0,
                "unbackedCredits": entry.unbacked,
                "featureId": entry.feature_id,
                "model": entry.model or None,
                "usageUnits": entry.units,
                "creditsPerUnit": entry.credits_per_unit,
                "weightId": entry.weight_id,
                "weightMatch": entry.weight_match or None,
                # Prefetched by the list views; the grants this deduction drew on.
                "allocations": [
                    {"creditGrantId": row.grant_id, "amount": row.amount}
                    for row in entry.consumptions.all()
                ],
            }
        )
    return body


def render_weight(weight: CreditWeight, now: dt.datetime) -> dict[str, Any]:
    return {
        "id": weight.pk,
        "featureId": weight.feature_id,
        "featureKey": weight.feature.key,
        "model": weight.model or None,
        "creditsPerUnit": weight.credits_per_unit,
        "effectiveFrom": weight.effective_from,
        "status": "scheduled" if weight.effective_from > now else "in_force",
        "batchId": weight.batch_id,
        "createdBy": weight.created_by,
        "createdAt": weight.created_at,
    }


def render_price(price: CreditPrice) -> dict[str, Any]:
    return {
        "id": price.pk,
        "denomination": price.denomination,
        "currency": price.currency,
        "pricePerCredit": price.price_per_credit,
        "effectiveFrom": price.effective_from,
        "batchId": price.batch_id,
        "createdAt": price.created_at,
    }


def render_pool_usage(usage: PoolUsage) -> dict[str, Any]:
    pool = usage.pool
    return {
        "poolId": pool.pk,
        "denomination": pool.denomination,
        "balance": pool.balance,
        "hardLimit": pool.hard_limit,
        "totalGranted": pool.total_granted,
        "totalConsumed": pool.total_consumed,
        "averageDailyBurn": usage.average_daily_burn,
        "burnWindowDays": usage.window_days,
        "projectedDepletionDate": usage.projected_depletion_date,
        "pricePerCredit": usage.price.price_per_credit if usage.price else None,
        "currency": usage.price.currency if usage.price else None,
    }
