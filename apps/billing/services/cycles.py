"""The billing cycle: close passed periods into invoices.

The cycle (:func:`billing_close_periods`) walks every subscription with a period
boundary it has not invoiced (:class:`SubscriptionBilling` is its cursor), in
batches taken ``FOR UPDATE SKIP LOCKED`` on the subscription rows, so two
runners never bill one subscription at once and a row a user is changing waits
for the next run. Each boundary of a subscription gives, by billing timing:

* in advance: at a period's start, its invoice (the base fee for the whole
  period, the previous period's usage); at the end of the last period, a final
  invoice for its usage, and a credit note for the unused part of a period that
  an immediate cancellation cut short;
* in arrears: at a period's end, its invoice (the base fee of each plan for the
  part of the period it was in force, the period's usage);
* at every period start, the plan's credits for the period (the credits app
  rolls the last period over first).

The first invoice of a run for a subscription also carries late usage: the
usage of periods already billed is summed again and any difference (events
that arrived after their period's invoice) is billed as adjustment lines.

Idempotency: the boundary cursor, an existence check under the subscription
lock, and the unique index ``invoice_one_per_subscription_period`` behind both.
Lock order: subscription rows, then invoice-number counters by environment id
(:mod:`.issuing`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.accounts.audit import Actor
from apps.billing.lines import (
    LineDraft,
    base_in_advance,
    base_in_arrears,
    rules_by_feature,
    unused_credit_line,
)
from apps.billing.models import Invoice, SubscriptionBilling
from apps.billing.periods import Period, Timeline
from apps.credits.services import credits_grant_plan_period
from apps.plans.models import Plan
from apps.subscriptions.models import Subscription

from .issuing import InvoiceDraft, _insert
from .late_usage import _late_usage
from .timelines import BATCH_SIZE, IN_ADVANCE, _boundaries, _Boundary, _Catalog, _Plan, _timelines
from .usage_book import _register_period, _usage_drafts, _UsageBook, _UsageNeed

SYSTEM = Actor.system()


@dataclasses.dataclass
class CycleResult:
    subscriptions: int = 0
    invoices: int = 0
    credit_notes: int = 0
    late_usage_lines: int = 0
    credit_grants: int = 0

    def add(self, other: CycleResult) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


def _needs_billing(now: dt.datetime) -> Q:
    """Subscriptions with a boundary to invoice: never seen, the next boundary passed, or
    one made earlier since (an immediate cancellation, a plan change that re-anchored)."""
    through = "billing_state__billed_through"
    return (
        Q(billing_state__isnull=True)
        | Q(billing_state__next_boundary_at__lte=now)
        | Q(**{f"{through}__lt": F("current_period_start")})
        | (Q(ended_at__isnull=False) & Q(**{f"{through}__lt": F("ended_at")}))
    )


@dataclasses.dataclass
class _Billed:
    """What earlier runs left for a batch: the cursors, the periods invoiced, and the
    subscriptions whose cancellation was already credited."""

    states: dict[Any, SubscriptionBilling]
    periods: set[tuple[Any, dt.datetime]]
    cancelled: set[Any]


@dataclasses.dataclass
class _Writes:
    """What a batch will write: invoice drafts in issuing order, each subscription's new
    cursor and next boundary, and the plan credits to grant."""

    drafts: list[InvoiceDraft] = dataclasses.field(default_factory=list)
    cursor: dict[Any, dt.datetime] = dataclasses.field(default_factory=dict)
    next_at: dict[Any, dt.datetime | None] = dataclasses.field(default_factory=dict)
    grants: list[tuple[Subscription, Plan, Period]] = dataclasses.field(default_factory=list)


def _billed_so_far(subscriptions: list[Subscription]) -> _Billed:
    states = {
        row.subscription_id: row
        for row in SubscriptionBilling.objects.filter(subscription__in=subscriptions)
    }
    periods = set(
        Invoice.objects.filter(
            subscription__in=subscriptions, type__in=Invoice.PERIOD_TYPES
        ).values_list("subscription_id", "period_start")
    )
    cancelled = set(
        Invoice.objects.filter(
            subscription__in=subscriptions, reason=Invoice.Reason.CANCELLATION
        ).values_list("subscription_id", flat=True)
    )
    return _Billed(states, periods, cancelled)


def _plans_by_env(
    subscriptions: list[Subscription], catalog: _Catalog, billed: _Billed, now: dt.datetime
) -> dict[Any, list[_Plan]]:
    """Each subscription's boundaries to invoice since its cursor, by environment."""
    timelines = _timelines(subscriptions, catalog, now)
    by_env: dict[Any, list[_Plan]] = defaultdict(list)
    for subscription in subscriptions:
        timeline = timelines[subscription.pk]
        state = billed.states.get(subscription.pk)
        after = state.billed_through if state else None
        boundaries = _boundaries(timeline, after, now)
        by_env[subscription.environment_id].append(
            _Plan(subscription, timeline, after, boundaries, after)
        )
    return by_env


def _read_period_usage(
    plans: list[_Plan], catalog: _Catalog, env_id: Any
) -> tuple[_UsageBook, dict[tuple, _UsageNeed]]:
    """The usage of every period that ends at one of the batch's boundaries, read at once."""
    book = _UsageBook(env_id)
    needs: dict[tuple, _UsageNeed] = {}
    for p in plans:
        for boundary in p.boundaries:
            if boundary.prev is not None:
                rules = rules_by_feature(boundary.prev.spans, catalog.rules_of)
                need = _UsageNeed(
                    ("period", p.subscription.pk, boundary.prev.start),
                    p.subscription,
                    boundary.prev,
                    rules,
                )
                needs[need.key] = need
                _register_period(book, need)
    book.fetch()
    return book, needs


def _in_advance_invoice(p: _Plan, boundary: _Boundary, usage: list[LineDraft]) -> InvoiceDraft:
    """In advance, at a period's start: the base fee for the whole period and the previous
    period's usage."""
    period = boundary.next
    assert period is not None
    return InvoiceDraft(
        subscription=p.subscription,
        type=(Invoice.Type.IN_ADVANCE_INITIAL if boundary.prev is None else Invoice.Type.REGULAR),
        reason=Invoice.Reason.PERIOD,
        currency=p.timeline.currency,
        period_start=period.start,
        period_end=period.natural_end,
        lines=[base_in_advance(period.plan_at_start, period.start, period.natural_end), *usage],
    )


def _in_advance_final(
    p: _Plan,
    boundary: _Boundary,
    usage: list[LineDraft],
    *,
    late_pending: bool,
    billed: _Billed,
    writes: _Writes,
    result: CycleResult,
) -> InvoiceDraft | None:
    """In advance, at the end of the last period: a credit note for the part an immediate
    cancellation cut short (queued first), then a final invoice for the usage, if any."""
    prev = boundary.prev
    assert prev is not None
    subscription = p.subscription
    if prev.end < prev.natural_end and subscription.pk not in billed.cancelled:
        credit = _cancellation_credit(subscription, p.timeline, prev)
        if credit is not None:
            writes.drafts.append(credit)
            result.credit_notes += 1
    if not (usage or late_pending):
        return None
    return InvoiceDraft(
        subscription=subscription,
        type=Invoice.Type.REGULAR,
        reason=Invoice.Reason.FINAL,
        currency=p.timeline.currency,
        period_start=boundary.at,
        period_end=boundary.at,
        lines=usage,
    )


def _in_arrears_invoice(p: _Plan, boundary: _Boundary, usage: list[LineDraft]) -> InvoiceDraft:
    """In arrears, at a period's end: the base fee of each plan for its part of the period,
    and the period's usage."""
    prev = boundary.prev
    assert prev is not None
    return InvoiceDraft(
        subscription=p.subscription,
        type=Invoice.Type.REGULAR,
        reason=Invoice.Reason.PERIOD,
        currency=p.timeline.currency,
        period_start=prev.start,
        period_end=prev.end,
        lines=[*base_in_arrears(prev), *usage],
    )


def _close_subscription(
    p: _Plan,
    *,
    env_id: Any,
    catalog: _Catalog,
    book: _UsageBook,
    needs: dict[tuple, _UsageNeed],
    late: list[LineDraft],
    billed: _Billed,
    writes: _Writes,
    result: CycleResult,
    now: dt.datetime,
) -> None:
    """Draft the invoices of one subscription's boundaries, in order (its late usage rides
    on the first one issued), queue its plan credits, and move its cursor."""
    subscription, timeline = p.subscription, p.timeline
    advance = timeline.billing_timing == IN_ADVANCE
    pending_late = late
    for boundary in p.boundaries:
        usage: list[LineDraft] = []
        if boundary.prev is not None:
            usage = _usage_drafts(
                book, needs[("period", subscription.pk, boundary.prev.start)], catalog
            )
        draft: InvoiceDraft | None = None
        if advance and boundary.next is not None:
            draft = _in_advance_invoice(p, boundary, usage)
        elif advance and boundary.prev is not None:
            draft = _in_advance_final(
                p,
                boundary,
                usage,
                late_pending=bool(pending_late),
                billed=billed,
                writes=writes,
                result=result,
            )
        elif not advance and boundary.prev is not None:
            draft = _in_arrears_invoice(p, boundary, usage)
        if draft is not None and (subscription.pk, draft.period_start) not in billed.periods:
            if pending_late:
                draft.lines.extend(pending_late)
                result.late_usage_lines += len(pending_late)
                pending_late = []
            writes.drafts.append(draft)
            billed.periods.add((subscription.pk, draft.period_start))
            result.invoices += 1
        if boundary.next is not None:
            plan = boundary.next.plan_at_start
            if plan.key in catalog.allocated_plan_keys.get(env_id, ()):
                writes.grants.append((subscription, plan, boundary.next))
        writes.cursor[subscription.pk] = boundary.at
    through = writes.cursor.get(subscription.pk) or p.after or subscription.started_at
    ended = subscription.ended_at
    if ended is not None and ended <= now:
        through = max(through, ended)  # its last boundary is billed: done
    writes.cursor[subscription.pk] = through
    writes.next_at[subscription.pk] = timeline.next_boundary(through)


def _grant_plan_credits(grants: list[tuple[Subscription, Plan, Period]]) -> int:
    for subscription, plan, period in grants:
        credits_grant_plan_period(
            environment=subscription.environment,
            customer=subscription.customer,
            plan_key=plan.key,
            period_start=period.start,
            period_end=period.natural_end,
            source_ref=str(subscription.pk),
            actor=SYSTEM,
        )
    return len(grants)


def _close_batch(
    subscriptions: list[Subscription], catalog: _Catalog, now: dt.datetime
) -> CycleResult:
    """Close one locked batch: read what earlier runs billed and the usage of the periods
    that ended, draft the invoices, store them, move the cursors, grant plan credits."""
    result = CycleResult(subscriptions=len(subscriptions))
    catalog.load({s.environment_id for s in subscriptions})
    billed = _billed_so_far(subscriptions)
    writes = _Writes()
    for env_id, plans in _plans_by_env(subscriptions, catalog, billed, now).items():
        late = _late_usage(plans, catalog, env_id)
        book, needs = _read_period_usage(plans, catalog, env_id)
        for p in plans:
            _close_subscription(
                p,
                env_id=env_id,
                catalog=catalog,
                book=book,
                needs=needs,
                late=late.get(p.subscription.pk, []),
                billed=billed,
                writes=writes,
                result=result,
                now=now,
            )
    _insert(writes.drafts, now=now)
    _save_cursors(subscriptions, billed.states, writes.cursor, writes.next_at, now)
    result.credit_grants += _grant_plan_credits(writes.grants)
    return result


def _cancellation_credit(
    subscription: Subscription, timeline: Timeline, period: Period
) -> InvoiceDraft | None:
    """The credit note for the part of an in-advance period an immediate cancellation cut:
    the unused share of the base fee of the plan in force at the cancellation."""
    plan = period.plan_at_end
    if plan.price_amount == 0:
        return None
    paid_invoice = (
        Invoice.objects.filter(
            subscription_id=subscription.pk,
            type__in=Invoice.PERIOD_TYPES,
            period_start=period.start,
        )
        .values_list("pk", flat=True)
        .first()
    )
    line = unused_credit_line(
        plan,
        at=period.end,
        period_start=period.start,
        period_end=period.natural_end,
        text="Cancelled: credit for the unused part of the period",
    )
    return InvoiceDraft(
        subscription=subscription,
        type=Invoice.Type.CREDIT,
        reason=Invoice.Reason.CANCELLATION,
        currency=timeline.currency,
        period_start=period.end,
        period_end=period.natural_end,
        lines=[line],
        credited_invoice_id=paid_invoice,
    )


def _save_cursors(
    subscriptions: Sequence[Subscription],
    states: dict[Any, SubscriptionBilling],
    cursor: dict[Any, dt.datetime],
    next_at: dict[Any, dt.datetime | None],
    now: dt.datetime,
) -> None:
    new, changed = [], []
    for subscription in subscriptions:
        at, following = cursor[subscription.pk], next_at[subscription.pk]
        state = states.get(subscription.pk)
        if state is None:
            new.append(
                SubscriptionBilling(
                    subscription=subscription,
                    environment_id=subscription.environment_id,
                    billed_through=at,
                    next_boundary_at=following,
                    updated_at=now,
                )
            )
        elif (at, following) != (state.billed_through, state.next_boundary_at):
            state.billed_through = max(at, state.billed_through)
            state.next_boundary_at, state.updated_at = following, now
            changed.append(state)
    SubscriptionBilling.objects.bulk_create(new)
    SubscriptionBilling.objects.bulk_update(
        changed, ["billed_through", "next_boundary_at", "updated_at"]
    )


def billing_close_periods(
    *, now: dt.datetime | None = None, batch_size: int = BATCH_SIZE
) -> CycleResult:
    """Invoice every period boundary that has passed, for every tenant (a system job).

    Idempotent and safe concurrently: see the module docstring. Each batch commits
    on its own; a subscription locked by someone else is left for the next run.
    """
    now = now or timezone.now()
    result = CycleResult()
    catalog = _Catalog()
    last_id = None
    while True:
        with transaction.atomic():
            query = Subscription.objects.filter(_needs_billing(now))
            if last_id is not None:
                query = query.filter(pk__gt=last_id)
            batch = list(
                query.select_for_update(skip_locked=True, of=("self",))
                .select_related("environment", "customer")
                .order_by("pk")[:batch_size]
            )
            if batch:
                result.add(_close_batch(batch, catalog, now))
                last_id = batch[-1].pk
        if len(batch) < batch_size:
            return result
