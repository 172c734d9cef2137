"""Entitlement checks: may this customer use this feature now (for N units)?

The hot path (a customer and feature seen before by this process, Redis up): no
PostgreSQL query. The customer's and feature's ids come from a per-process
cache, the plan state from ``state.py`` (validated by its token) and the usage
from the counter hash (``counters.py``), token and hash in one Redis round trip.
PostgreSQL is read when:

* the counter is missing, stale or inexact: the window's usage is summed from
  the ledger (and the counter rebuilt, under the pair's lock);
* reservations may be held for the feature (the counter's ``r`` flag);
* the feature is credit-backed: the pool's balance, spendable credits and
  holds (one statement; balances move with every grant and deduction);
* Redis is unreachable: everything (state and usage) from PostgreSQL.

Decision order: no subscription in force, past due, feature not in the plan (or
disabled), usage cap, credits. Every check is answered *as of now*; usage of an
event is visible to the check that follows the event call (ingestion moves the
counters after its commit, before it answers).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.core.memo import LocalCache
from apps.core.money import decimal_str
from apps.core.tenancy import scoped
from apps.customers.models import Customer
from apps.features.models import Feature

from . import counters, locks, state
from .counters import Window
from .models import Reservation

if TYPE_CHECKING:
    from apps.accounts.models import Environment
    from apps.credits.weights import WeightQuote

    from .state import Applied, CustomerState

ZERO = Decimal(0)
ONE = Decimal(1)
ID_TTL = 60.0  # seconds a customer's or feature's id is remembered per process
MAX_IDS = 100_000


class Reason:
    NO_SUBSCRIPTION = "no_subscription"
    FEATURE_NOT_IN_PLAN = "feature_not_in_plan"
    LIMIT_REACHED = "limit_reached"
    CREDITS_EXHAUSTED = "credits_exhausted"
    PAST_DUE = "past_due"
    UNAVAILABLE = "unavailable"  # PostgreSQL (or the key's verification) unreachable
    INTERNAL_ERROR = "internal_error"


@dataclasses.dataclass(frozen=True, slots=True)
class UsageView:
    used: Decimal  # in the cap window (the billing period when uncapped)
    held: Decimal  # units held by live reservations
    limit: Decimal | None
    window_start: dt.datetime
    window_end: dt.datetime | None  # None: never resets
    period_start: dt.datetime
    period_end: dt.datetime
    overage_price: Decimal | None

    @property
    def unlimited(self) -> bool:
        return self.limit is None

    @property
    def remaining(self) -> Decimal | None:
        if self.limit is None:
            return None
        return max(self.limit - self.used - self.held, ZERO)


@dataclasses.dataclass(frozen=True, slots=True)
class CreditView:
    denomination: str
    has_pool: bool
    balance: Decimal  # the pool's ledger balance (may be negative on a soft pool)
    available: Decimal  # spendable now, less what reservations hold
    held: Decimal
    hard_limit: bool
    required: Decimal  # credits the requested units would cost at today's weight
    weight: WeightQuote


@dataclasses.dataclass(slots=True)
class Decision:
    reference_id: str
    feature_key: str
    allowed: bool
    reason: str | None = None
    message: str | None = None
    requested_units: Decimal | None = None
    applied: Applied | None = None
    usage: UsageView | None = None
    credits: CreditView | None = None
    reservation: Reservation | None = None
    customer_id: uuid.UUID | None = None
    feature_id: uuid.UUID | None = None

    def deny(self, reason: str, message: str) -> Decision:
        self.allowed, self.reason, self.message = False, reason, message
        return self


# -- ids -------------------------------------------------------------------------------------

# (kind "c" or "f", environment id, reference id or feature key) -> id
_ids: LocalCache[tuple[str, object, str], uuid.UUID] = LocalCache(
    "entitlements.ids", ttl=ID_TTL, max_entries=MAX_IDS
)


def _cached_id(kind: str, environment_id: uuid.UUID, name: str) -> uuid.UUID | None:
    hit = _ids.get((kind, environment_id, name))
    if hit is not None:
        return hit
    model: Any = Customer if kind == "c" else Feature
    field = "reference_id" if kind == "c" else "key"
    found = (
        scoped(model.objects, environment_id)
        .filter(**{field: name})
        .values_list("id", flat=True)
        .first()
    )
    if found is not None:
        # Only hits are remembered: a customer created by the next event is seen at once.
        _ids.set((kind, environment_id, name), found)
    return found


# -- usage -----------------------------------------------------------------------------------


def _weight(
    environment_id: uuid.UUID, applied: Applied, model: str, at: dt.datetime
) -> WeightQuote:
    """Credits per unit now: a published weight (the model's, then the feature's), else the
    plan rule's ``creditsPerUnit``, else 1."""
    from apps.credits.models import WeightMatch
    from apps.credits.weights import WeightQuote, weight_for

    quote = weight_for(environment_id, applied.rule.feature_id, model, at)
    if quote.match == WeightMatch.NONE and applied.rule.credits_per_unit is not None:
        return WeightQuote(applied.rule.credits_per_unit, None, WeightMatch.NONE)
    return quote


def credit_view(
    environment_id: uuid.UUID,
    customer_id: uuid.UUID,
    applied: Applied,
    units: Decimal,
    *,
    model: str = "",
    now: dt.datetime,
) -> CreditView:
    """The customer's pool for the rule's denomination, in one statement: balance,
    spendable credits (live grants; nothing while the balance is negative) and holds."""
    from apps.credits.amounts import quantize_credits
    from apps.credits.models import CreditGrant, CreditModel, CreditPool

    denomination = applied.rule.credit_denomination
    weight = _weight(environment_id, applied, model, now)
    required = quantize_credits(units * weight.credits_per_unit)
    live = (
        CreditGrant.objects.filter(pool_id=OuterRef("pk"), remaining__gt=0, closed_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .values("pool_id")
        .annotate(total=Sum("remaining"))
        .values("total")
    )
    held = (
        scoped(Reservation, environment_id)
        .filter(
            customer_id=customer_id,
            denomination=denomination,
            status=Reservation.Status.HELD,
            expires_at__gt=now,
        )
        .values("customer_id")
        .annotate(total=Sum("credits"))
        .values("total")
    )
    row = (
        scoped(CreditPool, environment_id)
        .filter(customer_id=customer_id, denomination=denomination)
        .annotate(
            live=Coalesce(Subquery(live), ZERO),
            holds=Coalesce(Subquery(held), ZERO),
        )
        .values_list("balance", "hard_limit", "live", "holds")
        .first()
    )
    if row is None:
        hard = (
            scoped(CreditModel, environment_id)
            .filter(denomination=denomination)
            .values_list("hard_limit", flat=True)
            .first()
        )
        # No pool yet: nothing to spend; without a credit model, nothing could be charged.
        return CreditView(
            denomination, False, ZERO, ZERO, ZERO, hard is not False, required, weight
        )
    balance, hard_limit, spendable, holds = row
    spendable = spendable if balance > 0 else ZERO
    return CreditView(
        denomination, True, balance, spendable - holds, holds, hard_limit, required, weight
    )


def held_units(
    environment_id: uuid.UUID, customer_id: uuid.UUID, feature_id: uuid.UUID, now: dt.datetime
) -> Decimal:
    total = (
        scoped(Reservation, environment_id)
        .filter(
            customer_id=customer_id,
            feature_id=feature_id,
            status=Reservation.Status.HELD,
            expires_at__gt=now,
        )
        .aggregate(total=Sum("units"))["total"]
    )
    return total or ZERO


def usage_window(applied: Applied) -> Window:
    """The window a check counts usage in: the cap's, or the billing period when uncapped."""
    if applied.capped:
        return Window(applied.window_start, applied.window_end)
    return Window(applied.period_start, applied.period_end)


def _usage_from_ledger(
    environment_id: uuid.UUID,
    customer_id: uuid.UUID,
    feature_id: uuid.UUID,
    window: Window,
    *,
    now: dt.datetime,
    build: bool,
) -> tuple[Decimal, bool]:
    """(usage, holds may exist) from PostgreSQL; with ``build``, under the pair's lock, also
    rebuild the counter so the next check need not come here."""
    request = [(customer_id, feature_id, [window])]
    if not build:
        sums = counters.ledger_sums(environment_id, request, now=now)[0]
        return sums[window.field], sums[counters.HOLDS_MARK] > 0
    with transaction.atomic():
        locks.lock([locks.usage_key(environment_id, customer_id, feature_id)])
        sums = counters.ledger_sums(environment_id, request, now=now)[0]
        counters.write(
            counters.counter_key(environment_id, customer_id, feature_id),
            counters.snapshot_from(sums),
        )
    return sums[window.field], sums[counters.HOLDS_MARK] > 0


def usage_view(applied: Applied, used: Decimal, held: Decimal) -> UsageView:
    rule = applied.rule.rule
    window = usage_window(applied)
    return UsageView(
        used=used,
        held=held,
        limit=rule.max_usage,
        window_start=window.start,
        window_end=window.end,
        period_start=applied.period_start,
        period_end=applied.period_end,
        overage_price=rule.overage_unit_price,
    )


# -- decisions -------------------------------------------------------------------------------


def limit_problem(usage: UsageView, units: Decimal | None) -> str | None:
    if usage.limit is None or usage.overage_price is not None:
        return None  # uncapped, or the cap is soft (overage is billed)
    taken = usage.used + usage.held
    over = taken + units > usage.limit if units is not None else taken >= usage.limit
    if not over:
        return None
    per = "" if usage.window_end is None else " in this window"
    return (
        f"Usage limit of {decimal_str(usage.limit)} reached{per}: "
        f"{decimal_str(usage.used)} used, {decimal_str(usage.held)} held"
        + (f", {decimal_str(units)} requested." if units is not None else ".")
    )


def credit_problem(credits: CreditView) -> str | None:
    if not credits.hard_limit or credits.available >= credits.required:
        return None  # a soft pool may go below zero
    return (
        f"Not enough {credits.denomination} credits: {decimal_str(credits.required)} "
        f"needed, {decimal_str(max(credits.available, ZERO))} available."
    )


def _precheck(
    decision: Decision, customer: CustomerState | None, now: dt.datetime
) -> Applied | None:
    """Subscription, status and plan membership: the rule in force (its usage is reported
    even when past due), or None."""
    if customer is None or not customer.has_subscription_at(now):
        decision.deny(Reason.NO_SUBSCRIPTION, "The customer has no subscription in force.")
        return None
    applied = customer.applicable(decision.feature_key, now)
    status = applied.status if applied is not None else customer.status_at(now)
    if status == "past_due":
        decision.applied = applied
        decision.deny(Reason.PAST_DUE, "The customer's subscription is past due.")
        return applied if applied is not None and applied.rule.is_enabled else None
    if applied is None:
        decision.deny(
            Reason.FEATURE_NOT_IN_PLAN, "The customer's plan does not include this feature."
        )
        return None
    decision.applied = applied
    if not applied.rule.is_enabled:
        decision.deny(
            Reason.FEATURE_NOT_IN_PLAN, "This feature is disabled on the customer's plan."
        )
        return None
    return applied


def decide(
    environment: Environment,
    *,
    reference_id: str,
    feature_keys: Sequence[str],
    units: Decimal | None = None,
    model: str = "",
    now: dt.datetime | None = None,
    gate: counters.Gate | None = None,
) -> list[Decision]:
    """One decision per feature key for one customer (as of ``now``), in the given order.

    ``gate``: the API key's use stamp and rate-limit hit, made in the same Redis round
    trip when there is one (see ``api.lean_check``); check ``gate.tried`` after.
    """
    now = now or timezone.now()
    env_id = environment.pk
    decisions = [Decision(reference_id, key, True, requested_units=units) for key in feature_keys]
    customer_id = _cached_id("c", env_id, reference_id)
    env = state.env_state(env_id)
    if customer_id is None or not env.platform:
        for decision in decisions:
            decision.deny(Reason.NO_SUBSCRIPTION, "The customer has no subscription in force.")
        return decisions
    feature_ids = [_cached_id("f", env_id, key) for key in feature_keys]
    keys = [
        counters.counter_key(env_id, customer_id, feature_id)
        for feature_id in feature_ids
        if feature_id is not None
    ]
    # Ask Redis for only the window each check needs, as the cached plan state says (the
    # token it was cached under is checked in the same trip; a stale guess only costs a
    # read of the ledger).
    cached = state.peek(env_id, customer_id)
    fields = None
    if cached is not None:
        fields = []
        for key, feature_id in zip(feature_keys, feature_ids, strict=True):
            if feature_id is None:
                continue
            guess = cached.applicable(key, now)
            fields.append([usage_window(guess).field] if guess is not None else [])
    read = counters.read(state.state_key(env_id), keys, gate, fields)
    if gate is not None and gate.count > settings.API_RATE_LIMIT_PER_SECOND:
        return decisions  # the caller answers 429 (nothing decided)
    token = read[0] if read is not None else None
    snaps = iter(read[1] if read is not None else [])
    customer = state.customers(env_id, [customer_id], token).get(customer_id)
    build = read is not None and env.counters_allowed(now)
    for decision, feature_id in zip(decisions, feature_ids, strict=True):
        decision.customer_id, decision.feature_id = customer_id, feature_id
        snap = next(snaps) if feature_id is not None and read is not None else None
        applied = _precheck(decision, customer, now)
        if applied is None or feature_id is None:
            if applied is not None:  # a rule for a feature row we cannot see: deny
                decision.deny(Reason.FEATURE_NOT_IN_PLAN, "Unknown feature.")
            continue
        window = usage_window(applied)
        used = snap.value(window) if snap is not None and snap.usable() else None
        holds_possible = snap.reservations if snap is not None else True
        if used is None:
            used, holds_possible = _usage_from_ledger(
                env_id, customer_id, feature_id, window, now=now, build=build
            )
        held = held_units(env_id, customer_id, feature_id, now) if holds_possible else ZERO
        decision.usage = usage_view(applied, used, held)
        problem = limit_problem(decision.usage, units)
        if problem is not None and decision.allowed:
            decision.deny(Reason.LIMIT_REACHED, problem)
        if applied.rule.credit_backed:
            decision.credits = credit_view(
                env_id,
                customer_id,
                applied,
                units if units is not None else ONE,
                model=model,
                now=now,
            )
            problem = credit_problem(decision.credits)
            if problem is not None and decision.allowed:
                decision.deny(Reason.CREDITS_EXHAUSTED, problem)
    return decisions


def customer_feature_keys(
    environment: Environment, reference_id: str, *, now: dt.datetime | None = None
) -> list[str]:
    """The feature keys of the plans in force for the customer (empty without any)."""
    now = now or timezone.now()
    env_id = environment.pk
    customer_id = _cached_id("c", env_id, reference_id)
    if customer_id is None or not state.env_state(env_id).platform:
        return []
    token = state.read_token(env_id)
    customer = state.customers(env_id, [customer_id], token).get(customer_id)
    return customer.features_at(now) if customer is not None else []


def projected_end_of_period(usage: UsageView, now: dt.datetime) -> Decimal | None:
    """Usage at the end of the window if it goes on at the pace so far (linear)."""
    if usage.window_end is None or now <= usage.window_start:
        return None
    elapsed = Decimal((now - usage.window_start) // dt.timedelta(microseconds=1))
    total = Decimal((usage.window_end - usage.window_start) // dt.timedelta(microseconds=1))
    if elapsed <= 0 or total <= 0:
        return None
    projected = usage.used * total / elapsed
    return projected.quantize(Decimal("0.000001"))


def feature_usage(
    environment: Environment, reference_id: str, *, now: dt.datetime | None = None
) -> list[Decision]:
    """A decision per feature of the customer's plans in force (for the usage report)."""
    now = now or timezone.now()
    keys = customer_feature_keys(environment, reference_id, now=now)
    if not keys:
        return []
    return decide(environment, reference_id=reference_id, feature_keys=keys, now=now)
