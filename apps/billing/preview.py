"""What a plan change would bill, before it is made (the dashboard shows it before the
person confirms). Nothing is written.

The figures come from the same places as the real thing: the change's kind and timing
from ``apps.subscriptions.services.plan_change_kind`` (what ``subscription_change_plan``
decides), the proration lines from ``apps.billing.lines.plan_change_lines`` (what the
billing cycle's proration invoice holds), rounded per line to the currency's minor unit
as invoices are.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

from django.utils import timezone

from apps.core.money import from_minor_units, to_minor_units
from apps.plans.models import Plan
from apps.subscriptions.models import Subscription, SubscriptionChange
from apps.subscriptions.services import plan_change_kind

from .lines import LineDraft, plan_change_lines


@dataclasses.dataclass
class PlanChangePreview:
    change_type: str  # SubscriptionChange.Type
    timing: str  # SubscriptionChange.Timing
    effective_at: dt.datetime
    currency: str
    # (line, amount rounded to the minor unit) of the proration invoice the change makes now.
    lines: list[tuple[LineDraft, Decimal]]
    total: Decimal
    # Why there is no proration invoice, when there is none.
    note: str = ""

    @property
    def immediate(self) -> bool:
        return self.timing == SubscriptionChange.Timing.NOW


def plan_change_preview(
    subscription: Subscription,
    plan: Plan,
    *,
    timing: str | None = None,
    now: dt.datetime | None = None,
) -> PlanChangePreview:
    """The proration a move of ``subscription`` to ``plan`` (with ``timing`` as the person
    chose, or the default the services pick) would invoice if made at ``now``."""
    now = now or timezone.now()
    current = subscription.plan
    change_type, timing = plan_change_kind(current, plan, timing=timing)
    currency = current.currency
    immediate = timing == SubscriptionChange.Timing.NOW
    effective_at = now if immediate else subscription.current_period_end
    preview = PlanChangePreview(
        change_type=change_type,
        timing=timing,
        effective_at=effective_at,
        currency=currency,
        lines=[],
        total=Decimal(0),
    )
    if not immediate:
        preview.note = (
            f"Nothing is prorated: {plan.name} takes over at the end of the current period, "
            "and the next period is billed at its price."
        )
    elif current.billing_timing != Plan.BillingTiming.IN_ADVANCE:
        preview.note = (
            "Billed in arrears: the period's invoice charges each plan's base price for the "
            "part of the period it was in force; no separate proration invoice."
        )
    elif subscription.trial_ends_at is not None and now < subscription.trial_ends_at:
        preview.note = "The trial is running: nothing is prorated."
    else:
        _, lines = plan_change_lines(
            current,
            plan,
            at=now,
            period_start=subscription.current_period_start,
            period_end=subscription.current_period_end,
        )
        rounded = [
            (line, from_minor_units(to_minor_units(line.amount_exact, currency), currency))
            for line in lines
        ]
        preview.lines = rounded
        preview.total = sum((amount for _, amount in rounded), Decimal(0))
    return preview
