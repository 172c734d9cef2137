"""JSON shape of subscriptions and plan changes (flat objects, reference field names)."""

from __future__ import annotations

from typing import Any

from .models import Subscription, SubscriptionChange


def render_change(change: SubscriptionChange) -> dict[str, Any]:
    return {
        "id": change.pk,
        "changeType": change.change_type.upper(),
        "timing": change.timing,
        "status": change.status.upper(),
        "fromPlanId": change.from_plan_id,
        "fromPlanKey": change.from_plan.key,
        "toPlanId": change.to_plan_id,
        "toPlanKey": change.to_plan.key,
        "periodStart": change.period_start,
        "periodEnd": change.period_end,
        "effectiveAt": change.effective_at,
        "requestedAt": change.requested_at,
        "fulfilledAt": change.fulfilled_at,
        "cancelledAt": change.cancelled_at,
    }


def _pending(subscription: Subscription) -> SubscriptionChange | None:
    cached = getattr(subscription, "pending_changes", None)
    if cached is not None:
        return cached[0] if cached else None
    return (
        subscription.changes.filter(status=SubscriptionChange.Status.PENDING)
        .select_related("from_plan", "to_plan")
        .first()
    )


def render_subscription(subscription: Subscription) -> dict[str, Any]:
    plan = subscription.plan
    pending = _pending(subscription)
    return {
        "id": subscription.pk,
        "customerId": subscription.customer_id,
        "customerReferenceId": subscription.customer.reference_id,
        "planId": plan.pk,
        "planKey": plan.key,
        "planName": plan.name,
        "status": subscription.status,
        "isActive": subscription.status
        in {Subscription.Status.TRIALING, Subscription.Status.ACTIVE},
        "startedAt": subscription.started_at,
        "trialEndsAt": subscription.trial_ends_at,
        "currentPeriodStart": subscription.current_period_start,
        "currentPeriodEnd": subscription.current_period_end,
        "billingAnchorDay": subscription.billing_anchor.day,
        "intervalMonths": subscription.interval_months,
        "gracePeriodDays": subscription.grace_period_days,
        "cancelMode": subscription.cancel_mode.upper() or None,
        "cancelAtPeriodEnd": subscription.is_live and subscription.cancel_at is not None,
        "cancelEffectiveAt": subscription.cancel_at,
        "cancelledAt": subscription.cancelled_at,
        "endedAt": subscription.ended_at,
        "scheduledChange": render_change(pending) if pending is not None else None,
        "metadata": subscription.metadata,
        "createdAt": subscription.created_at,
        "modifiedAt": subscription.updated_at,
    }
