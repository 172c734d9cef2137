"""Writes for billing: the billing cycle (close periods into invoices), proration of plan
changes, invoice statuses, mark paid and void.

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
Numbers: :func:`_allocate_numbers` increments the environment's counter row in
the inserting transaction (the row stays locked until commit), so numbers are
gapless and in order. Lock order: subscription rows, then counters by
environment id.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Context, Decimal, localcontext
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from psycopg.types.json import Jsonb

from apps.accounts.audit import Actor, audit_change, changes_of
from apps.accounts.models import AuditEntry, Environment
from apps.core.errors import Conflict, ValidationFailed
from apps.core.money import to_minor_units
from apps.credits.models import CreditPool, PlanCreditAllocation
from apps.credits.services import credits_grant_plan_period
from apps.features.models import Feature
from apps.plans.models import Plan, PlanFeatureRule
from apps.subscriptions.models import Subscription, SubscriptionChange
from apps.subscriptions.periods import day_start
from apps.subscriptions.services import subscription_set_past_due

from . import errors, signals
from .lines import (
    WINDOWED,
    ZERO,
    LineDraft,
    UsageFigures,
    base_in_advance,
    base_in_arrears,
    late_usage_line,
    proration_lines,
    rules_by_feature,
    unused_credit_line,
    usage_figures,
    usage_lines,
    window_lookback,
)
from .models import (
    BillingSettings,
    Invoice,
    InvoiceLine,
    StripeMode,
    SubscriptionBilling,
)
from .periods import Period, Timeline
from .usage import Range, uncovered_by_credits, usage_by_day, usage_totals

logger = logging.getLogger(__name__)

SYSTEM = Actor.system()
BATCH_SIZE = 500
IN_ADVANCE = Plan.BillingTiming.IN_ADVANCE
EXACT_SUMS = Context(prec=100)


# -- settings and numbers -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EnvBilling:
    payment_terms_days: int = 0
    grace_period_days: int | None = None
    stripe_mode: str = StripeMode.NONE
    prefix: str = "INV"


def _env_billing(environment_ids: Iterable[Any]) -> dict[Any, EnvBilling]:
    ids = set(environment_ids)
    kinds = dict(Environment.objects.filter(pk__in=ids).values_list("pk", "kind"))
    rows = {row.environment_id: row for row in BillingSettings.objects.filter(environment__in=ids)}
    out = {}
    for env_id in ids:
        prefix = "INV" if kinds.get(env_id) == Environment.Kind.LIVE else "INV-TEST"
        row = rows.get(env_id)
        out[env_id] = (
            EnvBilling(row.payment_terms_days, row.grace_period_days, row.stripe_mode, prefix)
            if row
            else EnvBilling(prefix=prefix)
        )
    return out


def billing_settings_get(environment: Environment) -> EnvBilling:
    return _env_billing([environment.pk])[environment.pk]


@transaction.atomic
def billing_settings_update(
    *,
    environment: Environment,
    payment_terms_days: int | None = None,
    grace_period_days: Any = "unchanged",
    stripe_mode: str | None = None,
    actor: Actor | None = None,
) -> BillingSettings:
    """Change payment terms, grace period or Stripe mode; with an ``actor`` (a person or
    key asking), a change is audited (the system's own resets are audited by their cause)."""
    problems: dict[str, list[str]] = {}
    if payment_terms_days is not None and not 0 <= payment_terms_days <= 365:
        problems["paymentTermsDays"] = ["Between 0 and 365 days."]
    if isinstance(grace_period_days, int) and not 0 <= grace_period_days <= 365:
        problems["gracePeriodDays"] = ["Between 0 and 365 days."]
    if stripe_mode is not None and stripe_mode not in StripeMode.values:
        problems["stripeMode"] = [f"One of {', '.join(StripeMode.values)}."]
    if problems:
        raise ValidationFailed(fields=problems)
    row, _ = BillingSettings.objects.select_for_update().get_or_create(environment=environment)
    before = _settings_values(row)
    if payment_terms_days is not None:
        row.payment_terms_days = payment_terms_days
    if grace_period_days != "unchanged":
        row.grace_period_days = grace_period_days
    if stripe_mode is not None:
        row.stripe_mode = stripe_mode
    row.updated_at = timezone.now()
    row.save()
    changes = changes_of(before, _settings_values(row))
    if actor is not None and changes:
        audit_change(
            environment=environment,
            action=AuditEntry.Action.BILLING_SETTINGS_CHANGED,
            target_type="billing_settings",
            target_id=environment.pk,
            actor=actor,
            detail={"changes": changes},
        )
    return row


def _settings_values(row: BillingSettings) -> dict[str, Any]:
    return {
        "paymentTermsDays": row.payment_terms_days,
        "gracePeriodDays": row.grace_period_days,
        "stripeMode": row.stripe_mode,
    }


_NEXT_NUMBERS = """
INSERT INTO billing_invoicesequence (environment_id, last_number) VALUES (%s, %s)
ON CONFLICT (environment_id)
DO UPDATE SET last_number = billing_invoicesequence.last_number + EXCLUDED.last_number
RETURNING last_number
"""


def _allocate_numbers(environment_id: Any, count: int) -> range:
    """Reserve ``count`` consecutive invoice numbers of the environment.

    One statement increments the counter row; its row lock is held until the
    caller's transaction ends, so concurrent issuers queue, and a rollback
    returns the numbers: no gaps, no duplicates.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("invoice numbers are allocated inside the inserting transaction")
    with connection.cursor() as cur:
        cur.execute(_NEXT_NUMBERS, [environment_id, count])
        last = cur.fetchone()[0]
    return range(last - count + 1, last + 1)


# -- creating invoices --------------------------------------------------------------------


@dataclasses.dataclass
class InvoiceDraft:
    subscription: Subscription
    type: str
    reason: str
    currency: str
    period_start: dt.datetime
    period_end: dt.datetime
    lines: list[LineDraft]
    plan_change_id: Any = None
    credited_invoice_id: Any = None


_INVOICE_COLUMNS = (
    "id, environment_id, number, sequence, subscription_id, customer_id, plan_change_id,"
    " credited_invoice_id, type, reason, status, currency, period_start, period_end,"
    " total_minor, issued_at, due_at, grace_period_days, paid_at, past_due_at, voided_at,"
    " payment_reference, metadata, created_at, updated_at"
)
_LINE_COLUMNS = (
    "environment_id, invoice_id, position, kind, description, feature_id, plan_id,"
    " service_start, service_end, quantity, amount_exact, amount_minor, units_total,"
    " units_beyond_cap, units_uncovered, details"
)


def _insert(drafts: Sequence[InvoiceDraft], *, now: dt.datetime) -> list[uuid.UUID]:
    """Number and store invoices with their lines (each line rounded once, here); returns
    their ids in the drafts' order.

    Status: a credit note, or an invoice with nothing to pay, is paid at once;
    otherwise due on issue plus the environment's payment terms (pending until
    then). Rows go in with ``COPY`` (a billing run writes tens of thousands).

    Drafts of environments where Stripe drives billing are not stored (Stripe issues
    their invoices; ``apps.stripe_meters`` mirrors them with
    :func:`invoice_create_mirrored`): the cycle still moves their cursors and grants
    their plan credits.
    """
    if not drafts:
        return []
    by_env: dict[Any, list[InvoiceDraft]] = defaultdict(list)
    for draft in drafts:
        by_env[draft.subscription.environment_id].append(draft)
    settings = _env_billing(by_env)
    ids: dict[int, uuid.UUID] = {}
    invoices: list[tuple] = []
    lines: list[tuple] = []
    for env_id in sorted(by_env, key=str):  # counters locked in a fixed order
        env_drafts = by_env[env_id]
        env = settings[env_id]
        if env.stripe_mode == StripeMode.STRIPE_DRIVEN:
            continue
        numbers = _allocate_numbers(env_id, len(env_drafts))
        for sequence, draft in zip(numbers, env_drafts, strict=True):
            subscription = draft.subscription
            minor = [to_minor_units(line.amount_exact, draft.currency) for line in draft.lines]
            total = sum(minor)
            due_at = now + dt.timedelta(days=env.payment_terms_days)
            paid = draft.type == Invoice.Type.CREDIT or total <= 0
            if paid:
                status = Invoice.Status.PAID
            else:
                status = Invoice.Status.DUE if due_at <= now else Invoice.Status.PENDING
            grace = env.grace_period_days
            invoice_id = uuid.uuid4()
            ids[id(draft)] = invoice_id
            invoices.append(
                (
                    invoice_id,
                    env_id,
                    f"{env.prefix}-{sequence:06d}",
                    sequence,
                    subscription.pk,
                    subscription.customer_id,
                    draft.plan_change_id,
                    draft.credited_invoice_id,
                    draft.type,
                    draft.reason,
                    status,
                    draft.currency,
                    draft.period_start,
                    draft.period_end,
                    total,
                    now,
                    due_at,
                    grace if grace is not None else subscription.grace_period_days,
                    now if paid else None,
                    None,
                    None,
                    "nothing to pay" if paid and total == 0 else "",
                    Jsonb({}),
                    now,
                    now,
                )
            )
            for position, (line, amount_minor) in enumerate(
                zip(draft.lines, minor, strict=True), start=1
            ):
                lines.append(
                    (
                        env_id,
                        invoice_id,
                        position,
                        line.kind,
                        line.description,
                        line.feature_id,
                        line.plan_id,
                        line.service_start,
                        line.service_end,
                        line.quantity,
                        line.stored_exact,
                        amount_minor,
                        line.units_total,
                        line.units_beyond_cap,
                        line.units_uncovered,
                        Jsonb(line.details),
                    )
                )
    with connection.cursor() as cur:
        with cur.copy(f"COPY billing_invoice ({_INVOICE_COLUMNS}) FROM STDIN") as copy:
            for row in invoices:
                copy.write_row(row)
        with cur.copy(f"COPY billing_invoiceline ({_LINE_COLUMNS}) FROM STDIN") as copy:
            for row in lines:
                copy.write_row(row)
    issued = [ids[id(draft)] for draft in drafts if id(draft) in ids]
    signals.invoices_issued.send(sender=Invoice, invoice_ids=issued)
    return issued


# -- the cycle: planning one subscription -------------------------------------------------


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


@dataclasses.dataclass
class _Boundary:
    at: dt.datetime
    prev: Period | None  # the period ending here (None at the first paid start)
    next: Period | None  # the period starting here (None when the subscription ended)


def _boundaries(timeline: Timeline, after: dt.datetime | None, now: dt.datetime) -> list[_Boundary]:
    """The period boundaries in ``(after, now]``, in order."""
    out: list[_Boundary] = []
    previous: Period | None = None
    for period in timeline.periods_from(after or timeline.paid_start):
        if period.start > now:
            break
        if after is None or period.start > after:
            contiguous = previous if previous and previous.end == period.start else None
            out.append(_Boundary(period.start, contiguous, period))
        ended = timeline.ends_at is not None and period.end == timeline.ends_at
        if ended and period.end <= now and (after is None or period.end > after):
            out.append(_Boundary(period.end, period, None))
        previous = period
    return out


@dataclasses.dataclass
class _UsageNeed:
    """One period's usage to price for one subscription."""

    key: tuple
    subscription: Subscription
    period: Period
    rules: dict[Any, tuple[PlanFeatureRule, Plan]]


@dataclasses.dataclass
class _Plan:
    """What the cycle will write for one subscription."""

    subscription: Subscription
    timeline: Timeline
    after: dt.datetime | None
    boundaries: list[_Boundary]
    history_end: dt.datetime | None  # usage billed by earlier runs: [paid_start, history_end)


class _Catalog:
    """Plans, rules and features of the environments being billed, loaded once per run."""

    def __init__(self) -> None:
        self.plans: dict[Any, Plan] = {}
        self.rules_of: dict[Any, list[PlanFeatureRule]] = {}
        self.features: dict[Any, Feature] = {}
        self.allocated_plan_keys: dict[Any, set[str]] = {}
        self._loaded: set[Any] = set()

    def load(self, environment_ids: Iterable[Any]) -> None:
        missing = set(environment_ids) - self._loaded
        if not missing:
            return
        for plan in Plan.objects.filter(environment_id__in=missing):
            self.plans[plan.pk] = plan
        for rule in PlanFeatureRule.objects.filter(environment_id__in=missing).order_by(
            "created_at", "id"
        ):
            self.rules_of.setdefault(rule.plan_id, []).append(rule)
        feature_ids = {r.feature_id for rules in self.rules_of.values() for r in rules}
        for feature in Feature.objects.filter(pk__in=feature_ids - set(self.features)):
            self.features[feature.pk] = feature
        for env_id, key in PlanCreditAllocation.objects.filter(
            environment_id__in=missing
        ).values_list("environment_id", "plan_key"):
            self.allocated_plan_keys.setdefault(env_id, set()).add(key)
        self._loaded |= missing


def _timelines(subscriptions: Sequence[Subscription], catalog: _Catalog, now: dt.datetime) -> dict:
    ids = [s.pk for s in subscriptions]
    changes: dict[Any, list[SubscriptionChange]] = defaultdict(list)
    for change in SubscriptionChange.objects.filter(subscription_id__in=ids).filter(
        Q(status=SubscriptionChange.Status.COMPLETED)
        | Q(status=SubscriptionChange.Status.PENDING, effective_at__lte=now)
    ):
        changes[change.subscription_id].append(change)
    return {s.pk: Timeline(s, changes[s.pk], catalog.plans) for s in subscriptions}


class _UsageBook:
    """Collects the usage ranges a batch needs, then reads them in a few statements."""

    def __init__(self, environment_id: Any) -> None:
        self.environment_id = environment_id
        self.ranges: list[Range] = []
        self.daily_ranges: list[Range] = []
        self.daily_features: set[Any] = set()
        self.uncovered_ranges: list[Range] = []
        # Per uncovered range: the credit denominations its credit-backed rules draw on.
        self.uncovered_denominations: list[frozenset[str]] = []
        self.uncovered_features: set[Any] = set()
        self.totals: dict[Any, dict[Any, Decimal]] = {}
        self.daily: dict[Any, dict[Any, dict[dt.datetime, Decimal]]] = {}
        self.uncovered: dict[Any, dict[Any, Decimal]] = {}

    def need(self, key: Any, customer_id: Any, start: dt.datetime, end: dt.datetime) -> None:
        self.ranges.append((key, customer_id, start, end))

    def need_daily(
        self, key: Any, customer_id: Any, start: dt.datetime, end: dt.datetime, features: set
    ) -> None:
        self.daily_ranges.append((key, customer_id, start, end))
        self.daily_features |= features

    def need_uncovered(
        self,
        key: Any,
        customer_id: Any,
        start: dt.datetime,
        end: dt.datetime,
        *,
        features: set,
        denominations: set[str],
    ) -> None:
        self.uncovered_ranges.append((key, customer_id, start, end))
        self.uncovered_denominations.append(frozenset(denominations))
        self.uncovered_features |= features

    def fetch(self) -> None:
        if self.ranges:
            self.totals = usage_totals(self.environment_id, self.ranges)
        if self.daily_ranges:
            self.daily = usage_by_day(self.environment_id, self.daily_ranges, self.daily_features)
        if self.uncovered_ranges:
            self.uncovered = self._fetch_uncovered()
        self.ranges, self.daily_ranges, self.daily_features = [], [], set()
        self.uncovered_ranges, self.uncovered_features = [], set()
        self.uncovered_denominations = []

    def _fetch_uncovered(self) -> dict[Any, dict[Any, Decimal]]:
        """Units credits did not cover: a hard-limit pool's shortfall, or units charged in
        a denomination the customer had no pool for (no credit model: nothing was
        deducted). A soft pool covers everything (it goes negative), so a range whose
        denominations all had a soft pool of its customer from its start costs no read
        of its events (one small query decides)."""
        customers = {customer_id for _key, customer_id, _s, _e in self.uncovered_ranges}
        soft_since = {
            (customer_id, denomination): created_at
            for customer_id, denomination, created_at in CreditPool.objects.filter(
                environment_id=self.environment_id, customer_id__in=customers, hard_limit=False
            ).values_list("customer_id", "denomination", "created_at")
        }

        def covered(customer_id: Any, start: dt.datetime, denominations: frozenset[str]) -> bool:
            since = [soft_since.get((customer_id, d)) for d in denominations]
            return all(at is not None and at <= start for at in since)

        ranges = [
            r
            for r, denominations in zip(
                self.uncovered_ranges, self.uncovered_denominations, strict=True
            )
            if not covered(r[1], r[2], denominations)
        ]
        return uncovered_by_credits(self.environment_id, ranges, self.uncovered_features)


def _register_period(book: _UsageBook, need: _UsageNeed) -> None:
    """Ask for what pricing ``need.period``'s usage takes: its totals, for capped rules
    the usage before it (a cap that never resets) or per day (daily/weekly/monthly caps),
    and for credit-backed rules the units credits did not cover."""
    subscription, period = need.subscription, need.period
    book.need(need.key, subscription.customer_id, period.start, period.end)
    backed = [rule for rule, _plan in need.rules.values() if rule.is_credit_backed]
    if backed:
        book.need_uncovered(
            ("uncovered", *need.key),
            subscription.customer_id,
            period.start,
            period.end,
            features={rule.feature_id for rule in backed},
            denominations={rule.credit_denomination for rule in backed},
        )
    rules = [rule for rule, _plan in need.rules.values() if rule.max_usage is not None]
    if any(r.reset_interval == PlanFeatureRule.ResetInterval.NEVER for r in rules):
        book.need(
            ("before", *need.key), subscription.customer_id, subscription.started_at, period.start
        )
    windowed = [r for r in rules if r.reset_interval in WINDOWED]
    if windowed:
        lookback = min(window_lookback(r.reset_interval, period.start) for r in windowed)
        book.need_daily(
            ("daily", *need.key),
            subscription.customer_id,
            lookback,
            period.end,
            {r.feature_id for r in windowed},
        )


def _figures(book: _UsageBook, need: _UsageNeed, feature_id: Any) -> UsageFigures:
    rule_row, _plan = need.rules[feature_id]
    units = book.totals.get(need.key, {}).get(feature_id, ZERO)
    before = book.totals.get(("before", *need.key), {}).get(feature_id, ZERO)
    daily = book.daily.get(("daily", *need.key), {}).get(feature_id)
    figures = usage_figures(
        rule_row, units=units, period_start=need.period.start, used_before=before, daily=daily
    )
    uncovered = book.uncovered.get(("uncovered", *need.key), {}).get(feature_id, ZERO)
    if uncovered > 0:
        figures = dataclasses.replace(figures, uncovered=min(uncovered, figures.units))
    return figures


def _usage_drafts(book: _UsageBook, need: _UsageNeed, catalog: _Catalog) -> list[LineDraft]:
    out: list[LineDraft] = []
    for feature_id, (rule_row, plan) in sorted(
        need.rules.items(), key=lambda item: catalog.features[item[0]].key
    ):
        figures = _figures(book, need, feature_id)
        if figures.units == 0:
            continue
        out.extend(
            usage_lines(
                rule_row,
                catalog.features[feature_id],
                plan,
                figures,
                start=need.period.start,
                end=need.period.end,
            )
        )
    return out


# -- late usage ---------------------------------------------------------------------------


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
    if not suspects:
        return {}

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
    for need in needs:
        _register_period(book, need)
    book.fetch()
    out: dict[Any, list[LineDraft]] = defaultdict(list)
    for need in needs:
        snapshot = snapshots[need.subscription.pk]
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
            out[need.subscription.pk].append(
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


def _plans_of(timeline: Timeline) -> set[Any]:
    ids = {timeline.subscription.plan_id}
    for change in timeline.changes:
        ids |= {change.from_plan_id, change.to_plan_id}
    return ids


# -- the cycle: one batch -----------------------------------------------------------------


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


def _close_batch(
    subscriptions: list[Subscription], catalog: _Catalog, now: dt.datetime
) -> CycleResult:
    result = CycleResult(subscriptions=len(subscriptions))
    catalog.load({s.environment_id for s in subscriptions})
    timelines = _timelines(subscriptions, catalog, now)
    states = {
        row.subscription_id: row
        for row in SubscriptionBilling.objects.filter(subscription__in=subscriptions)
    }
    existing_periods = set(
        Invoice.objects.filter(
            subscription__in=subscriptions, type__in=Invoice.PERIOD_TYPES
        ).values_list("subscription_id", "period_start")
    )
    cancelled = set(
        Invoice.objects.filter(
            subscription__in=subscriptions, reason=Invoice.Reason.CANCELLATION
        ).values_list("subscription_id", flat=True)
    )

    by_env: dict[Any, list[_Plan]] = defaultdict(list)
    for subscription in subscriptions:
        timeline = timelines[subscription.pk]
        state = states.get(subscription.pk)
        after = state.billed_through if state else None
        boundaries = _boundaries(timeline, after, now)
        by_env[subscription.environment_id].append(
            _Plan(subscription, timeline, after, boundaries, after)
        )

    drafts: list[InvoiceDraft] = []
    cursor: dict[Any, dt.datetime] = {}
    next_at: dict[Any, dt.datetime | None] = {}
    grants: list[tuple[Subscription, Plan, Period]] = []
    for env_id, plans in by_env.items():
        late = _late_usage(plans, catalog, env_id)
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

        for p in plans:
            subscription, timeline = p.subscription, p.timeline
            advance = timeline.billing_timing == IN_ADVANCE
            pending_late = late.get(subscription.pk, [])
            for boundary in p.boundaries:
                usage: list[LineDraft] = []
                if boundary.prev is not None:
                    usage = _usage_drafts(
                        book, needs[("period", subscription.pk, boundary.prev.start)], catalog
                    )
                draft: InvoiceDraft | None = None
                if advance and boundary.next is not None:
                    period = boundary.next
                    plan = period.plan_at_start
                    draft = InvoiceDraft(
                        subscription=subscription,
                        type=(
                            Invoice.Type.IN_ADVANCE_INITIAL
                            if boundary.prev is None
                            else Invoice.Type.REGULAR
                        ),
                        reason=Invoice.Reason.PERIOD,
                        currency=timeline.currency,
                        period_start=period.start,
                        period_end=period.natural_end,
                        lines=[base_in_advance(plan, period.start, period.natural_end), *usage],
                    )
                elif advance and boundary.prev is not None:
                    prev = boundary.prev
                    if prev.end < prev.natural_end and subscription.pk not in cancelled:
                        credit = _cancellation_credit(subscription, timeline, prev)
                        if credit is not None:
                            drafts.append(credit)
                            result.credit_notes += 1
                    if usage or pending_late:
                        draft = InvoiceDraft(
                            subscription=subscription,
                            type=Invoice.Type.REGULAR,
                            reason=Invoice.Reason.FINAL,
                            currency=timeline.currency,
                            period_start=boundary.at,
                            period_end=boundary.at,
                            lines=usage,
                        )
                elif not advance and boundary.prev is not None:
                    prev = boundary.prev
                    draft = InvoiceDraft(
                        subscription=subscription,
                        type=Invoice.Type.REGULAR,
                        reason=Invoice.Reason.PERIOD,
                        currency=timeline.currency,
                        period_start=prev.start,
                        period_end=prev.end,
                        lines=[*base_in_arrears(prev), *usage],
                    )
                if (
                    draft is not None
                    and (subscription.pk, draft.period_start) not in existing_periods
                ):
                    if pending_late:
                        draft.lines.extend(pending_late)
                        result.late_usage_lines += len(pending_late)
                        pending_late = []
                    drafts.append(draft)
                    existing_periods.add((subscription.pk, draft.period_start))
                    result.invoices += 1
                if boundary.next is not None:
                    plan = boundary.next.plan_at_start
                    if plan.key in catalog.allocated_plan_keys.get(env_id, ()):
                        grants.append((subscription, plan, boundary.next))
                cursor[subscription.pk] = boundary.at
            through = cursor.get(subscription.pk) or p.after or subscription.started_at
            ended = subscription.ended_at
            if ended is not None and ended <= now:
                through = max(through, ended)  # its last boundary is billed: done
            cursor[subscription.pk] = through
            next_at[subscription.pk] = timeline.next_boundary(through)

    _insert(drafts, now=now)
    _save_cursors(subscriptions, states, cursor, next_at, now)
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
        result.credit_grants += 1
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


# -- late usage of ended subscriptions ----------------------------------------------------

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
    stripe_driven = BillingSettings.objects.filter(
        environment_id=OuterRef("environment_id"), stripe_mode=StripeMode.STRIPE_DRIVEN
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


# -- proration of plan changes ------------------------------------------------------------


def _unprorated_changes(now: dt.datetime) -> Any:
    invoiced = Invoice.objects.filter(plan_change_id=OuterRef("pk"))
    return (
        SubscriptionChange.objects.filter(
            status=SubscriptionChange.Status.COMPLETED,
            timing=SubscriptionChange.Timing.NOW,
            from_plan__billing_timing=IN_ADVANCE,
            effective_at__lte=now,
        )
        .filter(
            Q(subscription__trial_ends_at__isnull=True)
            | Q(effective_at__gte=F("subscription__trial_ends_at"))
        )
        .filter(~Exists(invoiced))
    )


def _proration_draft(change: SubscriptionChange, subscription: Subscription) -> InvoiceDraft:
    old, new = change.from_plan, change.to_plan
    if old.interval_months == new.interval_months:
        lines = proration_lines(
            old,
            new,
            at=change.effective_at,
            period_start=change.period_start,
            period_end=change.period_end,
        )
        period_start = change.effective_at
    else:
        # Another interval starts a new period (billed as such): give back the old one's rest.
        period_start = max(day_start(change.effective_at), change.period_start)
        lines = [
            unused_credit_line(
                old,
                at=period_start,
                period_start=change.period_start,
                period_end=change.period_end,
                text=f"Credit from old plan (switched to {new.name})",
            )
        ]
    total = sum(to_minor_units(line.amount_exact, old.currency) for line in lines)
    return InvoiceDraft(
        subscription=subscription,
        type=Invoice.Type.CREDIT if total < 0 else Invoice.Type.ADJUSTMENT,
        reason=Invoice.Reason.PLAN_CHANGE,
        currency=old.currency,
        period_start=period_start,
        period_end=max(change.period_end, period_start),
        lines=lines,
        plan_change_id=change.pk,
    )


def billing_prorate_changes(*, now: dt.datetime | None = None, limit: int = 1000) -> int:
    """An adjustment invoice (or a credit note, when the new plan is cheaper) for each
    immediate plan change of an in-advance subscription: ``remaining / period length``
    of the new plan's price less the same share of the old one's. Idempotent (one per
    change: ``invoice_one_per_plan_change``). In arrears, the period's invoice prorates
    the base fee instead."""
    now = now or timezone.now()
    created = 0
    change_ids = list(
        _unprorated_changes(now).order_by("effective_at").values_list("pk", flat=True)[:limit]
    )
    for change_id in change_ids:
        with transaction.atomic():
            change = (
                SubscriptionChange.objects.select_related("from_plan", "to_plan")
                .filter(pk=change_id)
                .first()
            )
            if change is None:
                continue
            subscription = (
                Subscription.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(pk=change.subscription_id)
                .first()
            )
            if subscription is None:
                continue  # busy: the next run
            if Invoice.objects.filter(plan_change_id=change.pk).exists():
                continue
            _insert([_proration_draft(change, subscription)], now=now)
            created += 1
    return created


# -- statuses -----------------------------------------------------------------------------


_PAST_DUE = """
UPDATE billing_invoice SET status = 'past_due', past_due_at = %s, updated_at = %s
WHERE status = 'due' AND due_at + make_interval(days => grace_period_days) <= %s
  AND NOT metadata @> '{"source": "stripe"}'
"""
# Invoices Stripe issued (Stripe-driven mode): Stripe's own collection moves their status.
MIRRORED = Q(metadata__contains={"source": "stripe"})


@dataclasses.dataclass
class StatusResult:
    due: int = 0
    past_due: int = 0
    subscriptions_past_due: int = 0
    subscriptions_restored: int = 0


def billing_update_statuses(*, now: dt.datetime | None = None) -> StatusResult:
    """Pending -> due at the due date; due -> past due once the grace period is over; the
    subscription of a past-due invoice becomes past due (entitlement checks then deny),
    and one with no past-due invoice left becomes active again. Idempotent. Invoices
    mirrored from Stripe keep the status Stripe gives them (its collection decides)."""
    now = now or timezone.now()
    result = StatusResult()
    with transaction.atomic():
        result.due = (
            Invoice.objects.filter(status=Invoice.Status.PENDING, due_at__lte=now)
            .exclude(MIRRORED)
            .update(status=Invoice.Status.DUE, updated_at=now)
        )
        with connection.cursor() as cur:
            cur.execute(_PAST_DUE, [now, now, now])
            result.past_due = cur.rowcount
    overdue = Invoice.objects.filter(subscription_id=OuterRef("pk"), status=Invoice.Status.PAST_DUE)
    for subscription in Subscription.objects.filter(status=Subscription.Status.ACTIVE).filter(
        Exists(overdue)
    ):
        if _set_past_due(subscription, True, now):
            result.subscriptions_past_due += 1
    for subscription in Subscription.objects.filter(status=Subscription.Status.PAST_DUE).filter(
        ~Exists(overdue)
    ):
        if _set_past_due(subscription, False, now):
            result.subscriptions_restored += 1
    return result


def _set_past_due(subscription: Subscription, past_due: bool, now: dt.datetime) -> bool:
    try:
        with transaction.atomic():
            subscription_set_past_due(
                subscription=subscription, past_due=past_due, now=now, actor=SYSTEM
            )
    except Conflict:
        return False  # cancelled or trialing meanwhile
    return True


def _restore_if_settled(subscription_id: Any, now: dt.datetime) -> None:
    subscription = Subscription.objects.filter(pk=subscription_id).first()
    if subscription is None or subscription.status != Subscription.Status.PAST_DUE:
        return
    if Invoice.objects.filter(
        subscription_id=subscription_id, status=Invoice.Status.PAST_DUE
    ).exists():
        return
    _set_past_due(subscription, False, now)


# -- payment and void ---------------------------------------------------------------------


def _locked_invoice(invoice: Invoice) -> Invoice:
    return (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("subscription", "customer")
        .get(pk=invoice.pk, environment_id=invoice.environment_id)
    )


@transaction.atomic
def invoice_mark_paid(
    *,
    invoice: Invoice,
    paid_at: dt.datetime | None = None,
    reference: str = "",
    now: dt.datetime | None = None,
    actor: Actor,
) -> Invoice:
    """Record an out-of-band payment: pending, due or past due -> paid. Paying a paid
    invoice again changes nothing; a void one is 409. A past-due subscription with no
    past-due invoice left becomes active again. Refused when Stripe drives billing."""
    now = now or timezone.now()
    invoice = _locked_invoice(invoice)
    if invoice.status == Invoice.Status.PAID:
        return invoice
    if invoice.status == Invoice.Status.VOID:
        raise Conflict("The invoice is void.", code=errors.INVOICE_VOID)
    env = _env_billing([invoice.environment_id])[invoice.environment_id]
    if env.stripe_mode == StripeMode.STRIPE_DRIVEN:
        raise Conflict(
            "Stripe drives billing in this environment: payments come from Stripe.",
            code=errors.STRIPE_DRIVEN,
        )
    if paid_at is not None and paid_at > now + dt.timedelta(minutes=5):
        raise ValidationFailed(fields={"paidAt": ["May not be in the future."]})
    before = invoice.status
    invoice.status = Invoice.Status.PAID
    invoice.paid_at = paid_at or now
    invoice.payment_reference = reference
    invoice.updated_at = now
    invoice.save(update_fields=["status", "paid_at", "payment_reference", "updated_at"])
    _restore_if_settled(invoice.subscription_id, now)
    signals.invoice_settled.send(sender=Invoice, invoice=invoice)
    _audit_invoice(
        invoice,
        AuditEntry.Action.INVOICE_MARKED_PAID,
        actor,
        {"status": [before, invoice.status], "paidAt": invoice.paid_at, "reference": reference},
    )
    return invoice


def _audit_invoice(invoice: Invoice, action: str, actor: Actor, detail: dict[str, Any]) -> None:
    audit_change(
        environment_id=invoice.environment_id,
        action=action,
        target_type="invoice",
        target_id=invoice.pk,
        actor=actor,
        detail={"number": invoice.number, **detail},
    )


@transaction.atomic
def invoice_void(
    *, invoice: Invoice, reason: str = "", now: dt.datetime | None = None, actor: Actor
) -> Invoice:
    """Void an unpaid invoice (its number stays used). Idempotent; a paid one is 409."""
    now = now or timezone.now()
    invoice = _locked_invoice(invoice)
    if invoice.status == Invoice.Status.VOID:
        return invoice
    if invoice.status == Invoice.Status.PAID:
        raise Conflict("A paid invoice cannot be voided.", code=errors.INVOICE_PAID)
    before = invoice.status
    invoice.status = Invoice.Status.VOID
    invoice.voided_at = now
    if reason:
        invoice.metadata = {**invoice.metadata, "voidReason": reason}
    invoice.updated_at = now
    invoice.save(update_fields=["status", "voided_at", "metadata", "updated_at"])
    _restore_if_settled(invoice.subscription_id, now)
    signals.invoice_settled.send(sender=Invoice, invoice=invoice)
    _audit_invoice(
        invoice,
        AuditEntry.Action.INVOICE_VOIDED,
        actor,
        {"status": [before, invoice.status], "reason": reason},
    )
    return invoice


# -- invoices issued by Stripe (Stripe-driven mode) ---------------------------------------

# How far each status is along; a mirrored invoice only moves forward (paid and void end).
_MIRROR_ORDER: dict[str, int] = {
    Invoice.Status.PENDING: 0,
    Invoice.Status.DUE: 1,
    Invoice.Status.PAST_DUE: 2,
    Invoice.Status.PAID: 3,
    Invoice.Status.VOID: 3,
}


def _line_rows(invoice: Invoice, lines: Sequence[LineDraft]) -> list[InvoiceLine]:
    return [
        InvoiceLine(
            environment_id=invoice.environment_id,
            invoice=invoice,
            position=position,
            kind=line.kind,
            description=line.description[:255],
            feature_id=line.feature_id,
            plan_id=line.plan_id,
            service_start=line.service_start,
            service_end=line.service_end,
            quantity=line.quantity,
            amount_exact=line.stored_exact,
            amount_minor=to_minor_units(line.amount_exact, invoice.currency),
            units_total=line.units_total,
            units_beyond_cap=line.units_beyond_cap,
            units_uncovered=line.units_uncovered,
            details=line.details,
        )
        for position, line in enumerate(lines, start=1)
    ]


def _after_mirrored_status(invoice: Invoice, now: dt.datetime) -> None:
    if invoice.status == Invoice.Status.PAST_DUE:
        subscription = Subscription.objects.get(pk=invoice.subscription_id)
        if subscription.status == Subscription.Status.ACTIVE:
            _set_past_due(subscription, True, now)
    elif invoice.status in (Invoice.Status.PAID, Invoice.Status.VOID):
        _restore_if_settled(invoice.subscription_id, now)


def invoice_create_mirrored(
    *,
    subscription: Subscription,
    invoice_type: str,
    reason: str,
    currency: str,
    period_start: dt.datetime,
    period_end: dt.datetime,
    lines: Sequence[LineDraft],
    status: str,
    issued_at: dt.datetime,
    due_at: dt.datetime,
    paid_at: dt.datetime | None = None,
    metadata: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Invoice:
    """Record an invoice Stripe issued (Stripe-driven mode), inside the caller's transaction:
    the environment's next number, the lines (each rounded once, as ours: an amount given
    in exact minor units stays exact), the total their sum, the status given. A past-due
    invoice makes its subscription past due, as ours do."""
    now = now or timezone.now()
    env = _env_billing([subscription.environment_id])[subscription.environment_id]
    (sequence,) = _allocate_numbers(subscription.environment_id, 1)
    invoice = Invoice(
        environment_id=subscription.environment_id,
        number=f"{env.prefix}-{sequence:06d}",
        sequence=sequence,
        subscription=subscription,
        customer_id=subscription.customer_id,
        type=invoice_type,
        reason=reason,
        status=status,
        currency=currency.upper(),
        period_start=period_start,
        period_end=max(period_end, period_start),
        issued_at=issued_at,
        due_at=due_at,
        grace_period_days=subscription.grace_period_days,
        paid_at=(paid_at or now) if status == Invoice.Status.PAID else None,
        past_due_at=now if status == Invoice.Status.PAST_DUE else None,
        voided_at=now if status == Invoice.Status.VOID else None,
        metadata=metadata or {},
        created_at=now,
        updated_at=now,
    )
    rows = _line_rows(invoice, lines)
    invoice.total_minor = sum(row.amount_minor for row in rows)
    invoice.save(force_insert=True)
    InvoiceLine.objects.bulk_create(rows)
    _after_mirrored_status(invoice, now)
    return invoice


def invoice_update_mirrored(
    *,
    invoice: Invoice,
    status: str,
    lines: Sequence[LineDraft] | None = None,
    paid_at: dt.datetime | None = None,
    metadata: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Invoice:
    """Apply Stripe's later state to a mirrored invoice, inside the caller's transaction.

    The status only moves forward (pending -> due -> past due -> paid or void; paid and
    void are final), so a late or repeated delivery never undoes a payment. ``lines``
    replace the lines and total of an invoice that is not paid or void (Stripe edits
    drafts). Past due makes the subscription past due; paid or void restores it when
    no other invoice of it is past due."""
    now = now or timezone.now()
    invoice = _locked_invoice(invoice)
    final = invoice.status in (Invoice.Status.PAID, Invoice.Status.VOID)
    fields = ["updated_at"]
    if lines is not None and not final:
        InvoiceLine.objects.filter(invoice=invoice).delete()
        rows = _line_rows(invoice, lines)
        InvoiceLine.objects.bulk_create(rows)
        invoice.total_minor = sum(row.amount_minor for row in rows)
        fields.append("total_minor")
    if metadata is not None:
        invoice.metadata = {**invoice.metadata, **metadata}
        fields.append("metadata")
    moved = not final and _MIRROR_ORDER[status] > _MIRROR_ORDER[invoice.status]
    if moved:
        invoice.status = status
        fields.append("status")
        if status == Invoice.Status.PAID:
            invoice.paid_at = paid_at or now
            fields.append("paid_at")
        elif status == Invoice.Status.PAST_DUE:
            invoice.past_due_at = now
            fields.append("past_due_at")
        elif status == Invoice.Status.VOID:
            invoice.voided_at = now
            fields.append("voided_at")
    invoice.updated_at = now
    invoice.save(update_fields=fields)
    if moved:
        _after_mirrored_status(invoice, now)
    return invoice
