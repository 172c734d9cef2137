"""Subscriptions: list and read (as ``GET /api/v1/client/subscriptions``), and the
Platform writes: subscribe, change plan, cancel (as the ``POST`` routes of
apps/subscriptions/api.py, through the same views and services).

The writes move money (a plan change is prorated, a cancellation ends billing), so
without ``confirm: true`` they answer a preview: the same service runs inside a
transaction that is rolled back, and the answer shows the subscription before and as it
would be after, with the proration invoice lines a change now would bring. Nothing is
changed and nothing is queued."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field

from apps.apikeys import scopes as S
from apps.billing.lines import proration_lines, unused_credit_line
from apps.core.money import decimal_str, to_minor_units
from apps.mcp.calls import ToolAnswer, call_view, current_caller, dry_run, tool
from apps.mcp.registry import ToolSpec
from apps.mcp.tools.pinning import pinned
from apps.plans.models import Plan
from apps.subscriptions import api as subscriptions_api
from apps.subscriptions.models import SubscriptionChange
from apps.subscriptions.periods import day_start

Confirm = Annotated[
    bool,
    Field(description="true to make the change; false (default) answers a preview only."),
]
IdempotencyKey = Annotated[
    str | None,
    Field(description="Optional: the same key and arguments within 24 h replay the first answer."),
]
Limit = Annotated[int | None, Field(description="Rows per page, 1-200 (default 50).")]
Cursor = Annotated[str | None, Field(description="nextCursor of the previous page.")]


def _sub_text(sub: dict[str, Any]) -> str:
    return (
        f"Subscription {sub['id']} of {sub['customerReferenceId']} to {sub['planKey']}: "
        f"{sub['status']}, period {sub['currentPeriodStart']} - {sub['currentPeriodEnd']}"
        + (f", cancels at {sub['cancelEffectiveAt']}" if sub.get("cancelEffectiveAt") else "")
    )


def _link(sub: dict[str, Any]) -> str:
    return f"/dashboard/subscriptions/{sub['id']}/"


@tool(ToolSpec("listSubscriptions", "Subscriptions", S.CUSTOMERS_READ, S.CUSTOMER_READ))
def list_subscriptions(
    *,
    customerReferenceId: Annotated[
        str | None, Field(description="Only this customer's (a customer key: always its own).")
    ] = None,
    status: Annotated[str | None, Field(description="e.g. active, trialing, cancelled.")] = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> ToolAnswer:
    """Subscriptions, newest first, optionally of one customer or in one status."""
    reference = current_caller().pinned_reference or customerReferenceId
    if reference is not None:
        reference = pinned(reference)
    page = call_view(
        subscriptions_api.SubscriptionListCreate,
        "get",
        query={
            "customerReferenceId": reference,
            "status": status,
            "limit": limit,
            "cursor": cursor,
        },
    )
    lines = [f"{len(page['items'])} subscriptions"] + [_sub_text(s) for s in page["items"][:20]]
    return ToolAnswer(page, "\n".join(lines), "/dashboard/subscriptions/")


@tool(ToolSpec("getSubscription", "One subscription", S.CUSTOMERS_READ, S.CUSTOMER_READ))
def get_subscription(*, subscriptionId: str) -> ToolAnswer:
    """One subscription with its current period, cancellation and scheduled change."""
    data = call_view(subscriptions_api.SubscriptionDetail, "get", subscription_id=subscriptionId)
    return ToolAnswer(data, _sub_text(data), _link(data))


@tool(
    ToolSpec(
        "createSubscription",
        "Subscribe a customer to a plan",
        S.CUSTOMERS_WRITE,
        kind="write",
        idempotent=False,
        confirms=True,
    )
)
def create_subscription(
    *,
    customerReferenceId: str,
    planId: Annotated[str, Field(description="The plan's id or key (an active plan).")],
    trialDays: int | None = None,
    confirm: Confirm = False,
    idempotencyKey: IdempotencyKey = None,
) -> ToolAnswer:
    """Subscribe the customer to an active plan; billing starts with the first period
    (after the trial, if any). Without confirm: true, a preview of the subscription that
    would be created."""
    body: dict[str, Any] = {"customerReferenceId": customerReferenceId, "planId": planId}
    if trialDays is not None:
        body["trialDays"] = trialDays

    def create() -> dict[str, Any]:
        return call_view(subscriptions_api.SubscriptionListCreate, "post", data=body)

    if not confirm:
        after = dry_run(create)
        data = {"preview": True, "confirmed": False, "before": None, "after": after}
        text = "PREVIEW (nothing changed; call again with confirm: true): " + _sub_text(after)
        return ToolAnswer(data, text, "/dashboard/subscriptions/")
    created = create()
    return ToolAnswer(
        {"preview": False, "confirmed": True, **created},
        "Created. " + _sub_text(created),
        _link(created),
    )


def _proration(subscription_id: str) -> dict[str, Any] | None:
    """The invoice a plan change made now brings (the billing run makes it from the
    change): the old plan's unused part back, the new plan for the rest of the period.
    Mirrors apps.billing.services' proration of a completed change."""
    change = (
        SubscriptionChange.objects.select_related("from_plan", "to_plan", "subscription")
        .filter(subscription_id=subscription_id)
        .order_by("-requested_at")
        .first()
    )
    if change is None:
        return None
    old, new = change.from_plan, change.to_plan
    trial_end = change.subscription.trial_ends_at
    prorated = (
        change.status == SubscriptionChange.Status.COMPLETED
        and change.timing == SubscriptionChange.Timing.NOW
        and old.billing_timing == Plan.BillingTiming.IN_ADVANCE
        and (trial_end is None or change.effective_at >= trial_end)
    )
    if not prorated:
        return {
            "changeType": change.change_type.upper(),
            "timing": change.timing,
            "effectiveAt": change.effective_at,
            "invoice": None,
        }
    if old.interval_months == new.interval_months:
        lines = proration_lines(
            old,
            new,
            at=change.effective_at,
            period_start=change.period_start,
            period_end=change.period_end,
        )
    else:
        at = max(day_start(change.effective_at), change.period_start)
        lines = [
            unused_credit_line(
                old,
                at=at,
                period_start=change.period_start,
                period_end=change.period_end,
                text=f"Credit from old plan (switched to {new.name})",
            )
        ]
    total_minor = sum(to_minor_units(line.amount_exact, old.currency) for line in lines)
    return {
        "changeType": change.change_type.upper(),
        "timing": change.timing,
        "effectiveAt": change.effective_at,
        "invoice": {
            "currency": old.currency,
            "totalMinor": total_minor,
            "lines": [
                {
                    "description": line.description,
                    "amount": decimal_str(line.amount_exact.quantize(Decimal("0.000001"))),
                    "serviceStart": line.service_start,
                    "serviceEnd": line.service_end,
                }
                for line in lines
            ],
        },
    }


@tool(
    ToolSpec(
        "changeSubscriptionPlan",
        "Change a subscription's plan",
        S.CUSTOMERS_WRITE,
        kind="destructive",
        idempotent=False,
        confirms=True,
    )
)
def change_subscription_plan(
    *,
    subscriptionId: str,
    newPlanId: Annotated[str, Field(description="The new plan's id or key.")],
    changeType: Annotated[
        str | None, Field(description="UPGRADE or DOWNGRADE (default: by price).")
    ] = None,
    timing: Annotated[
        str | None,
        Field(
            description="now (prorated) or period_end (default: upgrades now, downgrades "
            "at period end)."
        ),
    ] = None,
    confirm: Confirm = False,
    idempotencyKey: IdempotencyKey = None,
) -> ToolAnswer:
    """Move a subscription to another plan: now with proration, or at the period end.
    Without confirm: true, a preview with the proration invoice lines it would bring."""
    body: dict[str, Any] = {"planId": newPlanId}
    if changeType is not None:
        body["changeType"] = changeType
    if timing is not None:
        body["timing"] = timing
    before = call_view(subscriptions_api.SubscriptionDetail, "get", subscription_id=subscriptionId)

    def change() -> dict[str, Any]:
        after = call_view(
            subscriptions_api.SubscriptionPlanChange,
            "post",
            data=body,
            subscription_id=subscriptionId,
        )
        return {"after": after, "proration": _proration(subscriptionId)}

    if not confirm:
        outcome = dry_run(change)
        data = {"preview": True, "confirmed": False, "before": before, **outcome}
        invoice = (outcome["proration"] or {}).get("invoice")
        effect = (
            f"a proration invoice of {invoice['totalMinor']} {invoice['currency']} (minor units)"
            if invoice
            else "no proration invoice"
        )
        text = (
            f"PREVIEW (nothing changed; call again with confirm: true): {before['planKey']} -> "
            f"{newPlanId}, {effect}. After: " + _sub_text(outcome["after"])
        )
        return ToolAnswer(data, text, _link(before))
    outcome = change()
    data = {"preview": False, "confirmed": True, "before": before, **outcome}
    return ToolAnswer(data, "Changed. " + _sub_text(outcome["after"]), _link(before))


@tool(
    ToolSpec(
        "cancelSubscription",
        "Cancel a subscription",
        S.CUSTOMERS_WRITE,
        kind="destructive",
        idempotent=True,
        confirms=True,
    )
)
def cancel_subscription(
    *,
    subscriptionId: str,
    cancelMode: Annotated[
        str | None, Field(description="END_OF_PERIOD (default) or IMMEDIATE.")
    ] = None,
    confirm: Confirm = False,
    idempotencyKey: IdempotencyKey = None,
) -> ToolAnswer:
    """Cancel at the end of the current period (default) or immediately. Without
    confirm: true, a preview of the subscription as it would be."""
    before = call_view(subscriptions_api.SubscriptionDetail, "get", subscription_id=subscriptionId)
    body = {"cancelMode": cancelMode} if cancelMode else {}

    def cancel() -> dict[str, Any]:
        return call_view(
            subscriptions_api.SubscriptionCancellation,
            "post",
            data=body,
            subscription_id=subscriptionId,
        )

    if not confirm:
        after = dry_run(cancel)
        data = {"preview": True, "confirmed": False, "before": before, "after": after}
        text = "PREVIEW (nothing changed; call again with confirm: true): " + _sub_text(after)
        return ToolAnswer(data, text, _link(before))
    after = cancel()
    data = {"preview": False, "confirmed": True, "before": before, "after": after}
    return ToolAnswer(data, "Cancelled. " + _sub_text(after), _link(before))
