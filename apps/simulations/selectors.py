"""Reads of simulations: stored runs, the cohort's subscription periods, and what the
invoices billed for them (to reconcile the re-rated "before" with)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet

from apps.accounts.models import Environment
from apps.billing.models import Invoice, InvoiceLine
from apps.billing.periods import Timeline
from apps.core.money import from_minor_units
from apps.core.tenancy import get_scoped_or_404, scoped
from apps.subscriptions.models import Subscription, SubscriptionChange

from .catalog import Base
from .engine import SubPeriod, periods_of
from .models import Simulation
from .request import SimulationInput

ZERO = Decimal(0)
# The lines that bill a period's base fee and usage (late usage is reported apart).
PERIOD_KINDS = (
    InvoiceLine.Kind.BASE,
    InvoiceLine.Kind.USAGE,
    InvoiceLine.Kind.OVERAGE,
    InvoiceLine.Kind.CREDITS,
)


def simulations_list(environment: Environment) -> QuerySet[Simulation]:
    return scoped(Simulation, environment).order_by("-created_at", "-id")


def simulation_get(environment: Environment, simulation_id: str) -> Simulation:
    return get_scoped_or_404(Simulation, environment, pk=simulation_id)


def _subscriptions(environment: Environment, inputs: SimulationInput) -> list[Subscription]:
    rows = (
        scoped(Subscription, environment)
        .filter(started_at__lt=inputs.end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=inputs.start))
        .select_related("customer")
        .order_by("customer__reference_id", "started_at", "id")
    )
    if inputs.cohort.type == "customers":
        rows = rows.filter(customer__reference_id__in=inputs.cohort.references)
    return list(rows)


def cohort_periods(
    environment: Environment, inputs: SimulationInput, base: Base, now: dt.datetime
) -> list[SubPeriod]:
    """The cohort's closed periods ending in the window, in customer order. The band cohort
    is filtered later (its band is the re-rated "before")."""
    subscriptions = _subscriptions(environment, inputs)
    changes: dict[Any, list[SubscriptionChange]] = defaultdict(list)
    for change in SubscriptionChange.objects.filter(
        subscription_id__in=[s.pk for s in subscriptions]
    ).filter(
        Q(status=SubscriptionChange.Status.COMPLETED)
        | Q(status=SubscriptionChange.Status.PENDING, effective_at__lte=now)
    ):
        changes[change.subscription_id].append(change)
    until = min(inputs.end, now)
    out = []
    for subscription in subscriptions:
        timeline = Timeline(subscription, changes[subscription.pk], base.plans)
        for period in periods_of(timeline, inputs.start, until):
            keys = {span.plan.key for span in period.spans}
            if inputs.cohort.type == "plan" and inputs.cohort.plan_key not in keys:
                continue
            out.append(SubPeriod(subscription, period, timeline.currency))
    return out


def invoiced(
    environment: Environment, sps: list[SubPeriod]
) -> dict[tuple, tuple[Decimal, Decimal]]:
    """For each subscription period: what its invoices billed for its base fee and usage
    (lines by service start, void invoices left out), and the late usage billed for it
    since. Periods no invoice billed are absent."""
    if not sps:
        return {}
    periods: dict[Any, list[SubPeriod]] = defaultdict(list)
    for sp in sps:
        periods[sp.subscription.pk].append(sp)
    rows = (
        scoped(InvoiceLine, environment)
        .filter(invoice__subscription_id__in=list(periods))
        .exclude(invoice__status=Invoice.Status.VOID)
        .filter(kind__in=[*PERIOD_KINDS, InvoiceLine.Kind.LATE_USAGE])
        .filter(service_start__gte=min(sp.period.start for sp in sps))
        .filter(service_start__lt=max(sp.period.end for sp in sps))
        .values_list("invoice__subscription_id", "service_start", "kind", "amount_minor")
    )
    out: dict[tuple, tuple[Decimal, Decimal]] = {}
    for subscription_id, start, kind, minor in rows:
        for sp in periods[subscription_id]:
            if sp.period.start <= start < sp.period.end:
                billed, late = out.get(sp.key, (ZERO, ZERO))
                amount = from_minor_units(minor, sp.currency)
                if kind == InvoiceLine.Kind.LATE_USAGE:
                    out[sp.key] = (billed, late + amount)
                else:
                    out[sp.key] = (billed + amount, late)
    return out
