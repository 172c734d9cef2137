"""Late usage: events that arrived after their period's invoice.

:func:`_late_usage` gives the adjustment lines the cycle adds to a subscription's first
invoice of a run; :func:`billing_invoice_late_usage` bills the late usage of ended
subscriptions, which have no next invoice to carry it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from decimal import Context, Decimal, localcontext
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from apps.billing.lines import ZERO, LineDraft, UsageFigures, late_usage_line, rules_by_feature
from apps.billing.models import (
    BillingSettings,
    Invoice,
    InvoiceLine,
    StripeMode,
    SubscriptionBilling,
)
from apps.core.tenancy import scoped
from apps.subscriptions.models import Subscription
from apps.subscriptions.periods import day_start

from .issuing import InvoiceDraft, _insert
from .timelines import BATCH_SIZE, _Catalog, _Plan, _plans_of, _timelines
from .usage_book import _figures, _register_period, _UsageBook, _UsageNeed

EXACT_SUMS = Context(prec=100)


def _billed_snapshots(subscription_ids: Sequence[Any]) -> dict[Any, dict[tuple, UsageFigures]]:
    """Usage billed so far: subscription -> (feature, service start, service end) -> figures."""
    out: dict[Any, dict[tuple, UsageFigures]] = defaultdict(dict)
    rows = (
        InvoiceLine.objects.filter(
            invoice__subscription_id__in=subscription_ids, units_total__isnull=False
        )
        .values_list(
            "invoice__subscription_id",
            "feature_id",
            "service_start",
            "service_end",
            "units_total",
            "units_beyond_cap",
            "units_uncovered",
        )
        .order_by()
    )
    with localcontext(EXACT_SUMS):
        for sub_id, feature_id, start, end, units, beyond, uncovered in rows:
            key = (feature_id, start, end)
            seen = out[sub_id].get(key, UsageFigures(ZERO, ZERO))
            out[sub_id][key] = UsageFigures(
                seen.units + (units or ZERO),
                seen.beyond + (beyond or ZERO),
                seen.uncovered + (uncovered or ZERO),
            )
    return out


def _suspects(
    with_history: list[_Plan],
    snapshots: dict[Any, dict[tuple, UsageFigures]],
    catalog: _Catalog,
    book: _UsageBook,
) -> list[_Plan]:
    """The cheap check: subscriptions where one sum per feature over everything billed
    before this run differs from what their invoices billed."""
    for p in with_history:
        book.need(
            ("history", p.subscription.pk),
            p.subscription.customer_id,
            p.timeline.paid_start,
            p.history_end,  # type: ignore[arg-type]
        )
    book.fetch()
    suspects: list[_Plan] = []
    for p in with_history:
        billed: dict[Any, Decimal] = defaultdict(Decimal)
        with localcontext(EXACT_SUMS):
            for (feature_id, _s, _e), figures in snapshots[p.subscription.pk].items():
                billed[feature_id] += figures.units
        priced = {
            r.feature_id for plan in _plans_of(p.timeline) for r in catalog.rules_of.get(plan, [])
        }
        now_totals = book.totals.get(("history", p.subscription.pk), {})
        if any(now_totals.get(f, ZERO) != billed.get(f, ZERO) for f in priced):
            suspects.append(p)
    return suspects


def _billed_periods(suspects: list[_Plan], catalog: _Catalog) -> list[_UsageNeed]:
    """Every period of the suspects billed before this run, to price again."""
    needs: list[_UsageNeed] = []
    for p in suspects:
        for period in p.timeline.periods_from(p.timeline.paid_start):
            if period.end > p.history_end:  # type: ignore[operator]
                break
            rules = rules_by_feature(period.spans, catalog.rules_of)
            if rules:
                needs.append(
                    _UsageNeed(
                        ("late", p.subscription.pk, period.start), p.subscription, period, rules
                    )
                )
    return needs


def _late_lines(
    need: _UsageNeed, snapshot: dict[tuple, UsageFigures], catalog: _Catalog, book: _UsageBook
) -> list[LineDraft]:
    """One period's late-usage lines: per feature whose figures changed, what its usage
    costs now less what it was billed."""
    out: list[LineDraft] = []
    # By feature key, as the usage lines are (the rules' own order is their ids').
    for feature_id, (rule_row, plan) in sorted(
        need.rules.items(), key=lambda item: catalog.features[item[0]].key
    ):
        current = _figures(book, need, feature_id)
        was = snapshot.get(
            (feature_id, need.period.start, need.period.end), UsageFigures(ZERO, ZERO)
        )
        if (current.units, current.beyond, current.uncovered) == (
            was.units,
            was.beyond,
            was.uncovered,
        ):
            continue
        out.append(
            late_usage_line(
                rule_row,
                catalog.features[feature_id],
                plan,
                billed=was,
                current=current,
                start=need.period.start,
                end=need.period.end,
            )
        )
    return out


def _late_usage(
    plans: Sequence[_Plan], catalog: _Catalog, environment_id: Any
) -> dict[Any, list[LineDraft]]:
    """Late-usage adjustment lines per subscription.

    First a cheap check: one sum per subscription and feature over everything
    billed before this run, against what the invoices billed. Only where they
    differ is each earlier period summed again and priced: the line is what the
    period's usage costs now less what it was billed.
    """
    with_history = [p for p in plans if p.history_end and p.history_end > p.timeline.paid_start]
    if not with_history:
        return {}
    snapshots = _billed_snapshots([p.subscription.pk for p in with_history])
    book = _UsageBook(environment_id)
    suspects = _suspects(with_history, snapshots, catalog, book)
    if not suspects:
        return {}
    needs = _billed_periods(suspects, catalog)
    for need in needs:
        _register_period(book, need)
    book.fetch()
    out: dict[Any, list[LineDraft]] = defaultdict(list)
    for need in needs:
        lines = _late_lines(need, snapshots[need.subscription.pk], catalog, book)
        if lines:
            out[need.subscription.pk].extend(lines)
    return out


# The late-usage pass looks at each candidate at most once per UTC day; a candidate stays
# one for the window plus this slack, so what arrives on the window's last day is seen.
LATE_USAGE_SLACK = dt.timedelta(days=2)


def late_usage_window() -> dt.timedelta:
    """How long after a subscription ended its late usage is still looked for.

    Ingestion sets no bound of its own: it accepts any ``occurredAt`` from 2000-01-01
    (``apps.events.validation.EARLIEST``) to 5 minutes ahead, so this is billing's bound,
    ``BILLING_LATE_USAGE_WINDOW_DAYS`` (default 90): usage of an ended subscription
    arriving later than that after its end is not billed (docs/billing.md)."""
    return dt.timedelta(days=getattr(settings, "BILLING_LATE_USAGE_WINDOW_DAYS", 90))


@dataclasses.dataclass
class LateUsageResult:
    subscriptions: int = 0  # ended subscriptions whose usage was compared with their invoices
    invoices: int = 0
    late_usage_lines: int = 0


def _late_usage_candidates(now: dt.datetime) -> Any:
    """Ended subscriptions with every boundary invoiced, that ended within the window (and
    slack), not yet looked at today, outside environments where Stripe drives billing."""
    stripe_driven = scoped(BillingSettings, OuterRef("environment_id")).filter(
        stripe_mode=StripeMode.STRIPE_DRIVEN
    )
    return (
        Subscription.objects.filter(
            ended_at__isnull=False,
            ended_at__lte=now,
            ended_at__gt=now - late_usage_window() - LATE_USAGE_SLACK,
            billing_state__billed_through__gte=F("ended_at"),
        )
        .filter(
            Q(billing_state__late_usage_checked_at__isnull=True)
            | Q(billing_state__late_usage_checked_at__lt=day_start(now))
        )
        .filter(~Exists(stripe_driven))
    )


def _late_usage_unchecked(state: SubscriptionBilling, today: dt.datetime) -> bool:
    """Not yet looked at for late usage today."""
    checked = state.late_usage_checked_at
    return checked is None or checked < today


def _late_usage_batch(
    subscriptions: list[Subscription], catalog: _Catalog, now: dt.datetime
) -> LateUsageResult:
    today = day_start(now)
    states = {
        row.subscription_id: row
        for row in SubscriptionBilling.objects.filter(subscription__in=subscriptions)
    }
    invoiced_today = set(
        Invoice.objects.filter(
            subscription__in=subscriptions,
            reason=Invoice.Reason.LATE_USAGE,
            period_start=today,
        ).values_list("subscription_id", flat=True)
    )
    # Under the lock, again: another runner may have looked since the candidates were read.
    due = [
        s
        for s in subscriptions
        if s.pk in states
        and s.pk not in invoiced_today
        and _late_usage_unchecked(states[s.pk], today)
    ]
    result = LateUsageResult(subscriptions=len(due))
    if not due:
        return result
    catalog.load({s.environment_id for s in due})
    timelines = _timelines(due, catalog, now)
    by_env: dict[Any, list[_Plan]] = defaultdict(list)
    for subscription in due:
        ended = subscription.ended_at
        by_env[subscription.environment_id].append(
            _Plan(
                subscription,
                timelines[subscription.pk],
                states[subscription.pk].billed_through,
                [],
                ended,
            )
        )
    drafts: list[InvoiceDraft] = []
    for env_id, plans in by_env.items():
        late = _late_usage(plans, catalog, env_id)
        for p in plans:
            lines = late.get(p.subscription.pk)
            if not lines:
                continue
            drafts.append(
                InvoiceDraft(
                    subscription=p.subscription,
                    type=Invoice.Type.ADJUSTMENT,
                    reason=Invoice.Reason.LATE_USAGE,
                    currency=p.timeline.currency,
                    period_start=today,
                    period_end=today,
                    lines=lines,
                )
            )
            result.late_usage_lines += len(lines)
    _insert(drafts, now=now)
    result.invoices = len(drafts)
    SubscriptionBilling.objects.filter(subscription__in=due).update(
        late_usage_checked_at=now, updated_at=now
    )
    return result


def billing_invoice_late_usage(
    *, now: dt.datetime | None = None, batch_size: int = BATCH_SIZE
) -> LateUsageResult:
    """Bill usage that arrived after an ended subscription's last invoice (a system job).

    An ended subscription has no next invoice to carry late usage, so each one that
    ended within :func:`late_usage_window` is looked at once per UTC day: its usage is
    summed again (one statement for a batch) and compared with what its invoices billed;
    where they differ, each period is priced again and the difference is billed on a
    late-usage invoice of its own (type adjustment, reason ``late_usage``, dated the UTC
    day it is issued), lines stated as late usage of their period. Told once: its lines
    join what was billed.

    Idempotent and safe concurrently: subscriptions are taken in batches ``FOR UPDATE
    SKIP LOCKED`` (as the close does), re-checked under the lock (looked at today, or
    invoiced today), and the partial unique index ``invoice_one_late_usage_per_day``
    allows one late-usage invoice per subscription and day.
    """
    now = now or timezone.now()
    result = LateUsageResult()
    catalog = _Catalog()
    last_id = None
    while True:
        with transaction.atomic():
            query = _late_usage_candidates(now)
            if last_id is not None:
                query = query.filter(pk__gt=last_id)
            batch = list(
                query.select_for_update(skip_locked=True, of=("self",))
                .select_related("environment", "customer")
                .order_by("pk")[:batch_size]
            )
            if batch:
                done = _late_usage_batch(batch, catalog, now)
                for field in dataclasses.fields(result):
                    setattr(
                        result, field.name, getattr(result, field.name) + getattr(done, field.name)
                    )
                last_id = batch[-1].pk
        if len(batch) < batch_size:
            return result
