"""The entitlements step of ingestion: plan revenue, usage caps, credits, reservations and
usage counters: a step of ``apps.events.pipeline``, listed in ``settings.INGESTION_STEPS``
(the ledger never imports us).

For each request of a Platform environment (one that has had a subscription;
other environments skip the step for the price of a dictionary lookup):

before the events are stored, inside the request's transaction:
  1. lock every (customer, feature) of the request (``locks.py``);
  2. one Redis round trip: the environment's state token and the usage counter
     of each pair (``counters.py``); the customers' plan state (``state.py``);
  3. a counter that is missing, stale or inexact for a window an event needs is
     read from the ledger (one statement for the request) and, when allowed,
     rebuilt;
  4. events in request order, each at its ``occurredAt``: the rule in force
     (first subscription in force whose plan has the feature), the usage before
     it in its billing period and cap window, then
     * revenue when the event has no ``revenueAmount``: what the rule charges for
       these units at this position, ``marginal_charge(rule, used_before, units)``
       (per-event revenues of a period add up to the period's charge), stored
       with revenue source ``plan_rule`` (USD plans only: the ledger is in USD);
     * caps: units beyond ``maxUsage`` in the cap window flag the event
       (``usage_limit_exceeded``, ``overage_units``); it is stored with its real
       usage and cost (PRODUCT.md §3.7) and the answer says
       ``usageLimitExceeded: true``; overage is priced at the overage price, or
       not at all under a hard cap;
     * a ``reservationId`` is looked up (held, not expired, same customer and
       feature) to be settled;

after the events are stored, still in the transaction:
  5. credits: each stored event of a credit-backed feature is charged with
     ``apps.credits.services.credits_deduct_for_usage`` (a batch: with
     ``credits_deduct_for_usage_many``, pools locked in id order, one statement per table);
     a hard-limit pool never goes below zero: the shortfall is stamped on the
     event and returned (``insufficientCredits``, ``creditShortfall``); each charged
     event gets a typed ``apps.credits.coverage.CreditCharge`` result, which later
     steps read (the Stripe meter step: the units credits did not cover);
  6. the reservations are settled;

after the commit, before the answer:
  7. the counters move by the stored events' units (so the next check sees them).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from apps.core.errors import TansoError
from apps.core.money import quantize_event_amount
from apps.core.tenancy import scoped
from apps.credits.coverage import CreditCharge
from apps.events.models import RevenueSource
from apps.events.pipeline import Batch, Item
from apps.events.selectors import recorded_keys
from apps.plans.pricing import POSITIONAL, cap_split, marginal_charge

from . import counters, locks, state
from .counters import Window
from .models import Reservation

if TYPE_CHECKING:
    from apps.accounts.models import Environment
    from apps.credits.services import DeductionResult

    from .state import Applied

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
NAME = "entitlements"
# Revenue goes in the ledger's currency; rules of plans in another currency price nothing.
LEDGER_CURRENCY = "USD"


def windows_for(applied: Applied) -> tuple[Window, Window, Window | None]:
    """(billing period, cap window, period overage) of a rule in force. The cap window
    is the period itself unless the cap resets on its own interval; the overage field
    is only needed for a positional model whose cap resets on its own interval."""
    period = Window(applied.period_start, applied.period_end)
    if not applied.capped or applied.cap_is_period:
        return period, period, None
    cap = Window(applied.window_start, applied.window_end)
    overage = None
    if applied.rule.rule.model in POSITIONAL:
        overage = Window(applied.period_start, applied.period_end, "o")
    return period, cap, overage


@dataclasses.dataclass(frozen=True, slots=True)
class UsageLimitPassed:
    """An event that went beyond its rule's usage cap (stored all the same)."""

    limit: Decimal | None
    overage_units: Decimal
    overage_billed: bool  # the rule prices overage (else a hard cap: not billed)

    def answer_fields(self) -> dict[str, Any]:
        return {
            "usageLimitExceeded": True,
            "usageLimit": self.limit,
            "overageUnits": self.overage_units,
            "overageBilled": self.overage_billed,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class ReservationSettlement:
    """What became of the reservation an event named: settled, or why not."""

    reservation_id: uuid.UUID
    problem: str | None = None  # unknown, other_customer_or_feature, settled, expired...

    def answer_fields(self) -> dict[str, Any]:
        if self.problem is None:
            return {"reservationId": str(self.reservation_id), "reservationStatus": "settled"}
        return {
            "reservationId": str(self.reservation_id),
            "reservationStatus": "not_held",
            "reservationProblem": self.problem,
        }


@dataclasses.dataclass(slots=True)
class _ItemWork:
    applied: Applied | None = None
    overage: Decimal = ZERO
    reservation: Reservation | None = None


@dataclasses.dataclass(slots=True)
class _Work:
    items: dict[int, _ItemWork] = dataclasses.field(default_factory=dict)  # by id(item)
    # Credit charges computed before the store (credits_prepare_usage), for these items.
    prepared: Any = None
    credit_items: list[Item] = dataclasses.field(default_factory=list)
    deltas: dict[tuple[uuid.UUID, uuid.UUID], counters.Deltas] = dataclasses.field(
        default_factory=dict
    )
    tracked: dict[tuple[uuid.UUID, uuid.UUID], list[Window]] = dataclasses.field(
        default_factory=dict
    )


class EntitlementsStep:
    name = NAME
    runs_after: tuple[str, ...] = ()

    def wants(self, environment: Environment) -> bool:
        return state.is_platform(environment)

    # -- before the store ----------------------------------------------------------------

    def before_store(self, batch: Batch) -> None:
        env_id = batch.environment.pk
        now = timezone.now()
        work = _Work()
        batch.state[NAME] = work
        live = [item for item in batch.items if not item.duplicate_in_batch]
        if len(live) > 1:
            # A batch may repeat keys recorded earlier: those are not stored, so they must not
            # move later events' position in their period (single events just roll back).
            taken = recorded_keys(env_id, [item.key for item in live])
            live = [item for item in live if item.key not in taken]
        pairs = sorted({(item.customer_id, item.feature_id) for item in live})
        if not pairs:
            return
        locks.lock(locks.usage_key(env_id, c, f) for c, f in pairs)
        keys = [counters.counter_key(env_id, c, f) for c, f in pairs]
        read = counters.read(state.state_key(env_id), keys)
        token, snaps = read if read is not None else (None, [counters.Snapshot() for _ in pairs])
        customers = state.customers(env_id, {c for c, _ in pairs}, token)
        may_build = token is not None and state.env_state(env_id).counters_allowed(now)

        by_pair: dict[tuple[uuid.UUID, uuid.UUID], list[Item]] = {}
        for item in live:
            by_pair.setdefault((item.customer_id, item.feature_id), []).append(item)
            work.items[id(item)] = _ItemWork(
                applied=customers[item.customer_id].applicable(
                    item.event.feature_key, item.event.occurred_at
                )
            )

        # Which windows each pair's events need; read what the counters cannot give.
        needed: dict[tuple[uuid.UUID, uuid.UUID], list[Window]] = {}
        for pair, items in by_pair.items():
            wanted: dict[str, Window] = {}
            for item in items:
                applied = work.items[id(item)].applied
                if applied is not None:
                    for window in windows_for(applied):
                        if window is not None:
                            wanted[window.field] = window
            needed[pair] = list(wanted.values())
        snap_of = dict(zip(pairs, snaps, strict=True))
        to_read = [
            pair for pair in pairs if needed[pair] and not snap_of[pair].covers(needed[pair])
        ]
        if to_read:
            sums = counters.ledger_sums(
                env_id, [(c, f, needed[(c, f)]) for c, f in to_read], now=now
            )
            for pair, found in zip(to_read, sums, strict=True):
                fresh = counters.snapshot_from(found)
                if may_build:
                    counters.write(counters.counter_key(env_id, *pair), fresh)
                else:
                    fresh.token = None  # used for this request only
                snap_of[pair] = fresh

        self._reservations(batch, live, work)
        for pair, items in by_pair.items():
            snap = snap_of[pair]
            tracked = [w for w in map(Window.parse, snap.fields) if w is not None]
            running = {w.field: snap.fields.get(w.field) for w in tracked}
            if snap.token is not None:
                work.deltas[pair] = counters.Deltas(counters.counter_key(env_id, *pair), snap.token)
                work.tracked[pair] = tracked
            for item in items:
                self._price(item, work.items[id(item)], running)
                self._advance(item, work.items[id(item)], tracked, running)
        self._prepare_credits(batch, live, work)

    @staticmethod
    def _prepare_credits(batch: Batch, live: list[Item], work: _Work) -> None:
        """Lock the pools and compute the credit charges now, before the store: the store
        takes row locks that every event of the feature shares (its daily rollup), held
        until the commit, so the less happens after it the less events queue behind it.
        Only the write (which needs the events' ids) is left for after the store. A
        single event without units takes the general path after the store (nothing to
        charge: no lock)."""
        charged = [item for item in live if _credit_backed(work.items[id(item)].applied)]
        if not charged or (len(charged) == 1 and not charged[0].event.usage_units):
            return
        from apps.credits.services import credits_prepare_usage

        work.credit_items = charged
        work.prepared = credits_prepare_usage(
            environment=batch.environment,
            charges=[_usage_charge(item, work.items[id(item)].applied, "") for item in charged],
        )

    def _price(self, item: Item, job: _ItemWork, running: dict[str, Decimal | None]) -> None:
        applied = job.applied
        if applied is None or not applied.rule.is_enabled:
            return
        rule = applied.rule.rule
        units = item.event.usage_units
        period, cap, overage = windows_for(applied)
        period_used = running.get(period.field) or ZERO
        window_used = running.get(cap.field) or ZERO
        _within, beyond = cap_split(rule, window_used, units)
        job.overage = beyond
        if beyond > 0:
            item.flags.usage_limit_passed(
                limit=rule.max_usage or ZERO, used_before=window_used, beyond=beyond
            )
            item.add(
                UsageLimitPassed(
                    limit=rule.max_usage,
                    overage_units=beyond,
                    overage_billed=rule.overage_unit_price is not None,
                )
            )
        if item.revenue_usd is not None:
            return  # revenueAmount sent: it wins
        if applied.rule.currency != LEDGER_CURRENCY:
            item.flags.plan_revenue_skipped = f"plan currency {applied.rule.currency}"
            return
        if cap == period:
            revenue = marginal_charge(rule, period_used, units)
        else:
            # The cap resets on its own interval: the tiers count the period's units within
            # caps (only positional models need that, and only they track the overage).
            within_before = period_used
            if overage is not None:
                within_before -= running.get(overage.field) or ZERO
            revenue = marginal_charge(
                rule, max(within_before, ZERO), units, window_used_before=window_used
            )
        item.revenue_usd = quantize_event_amount(revenue)
        item.revenue_source = RevenueSource.PLAN_RULE.value

    @staticmethod
    def _advance(
        item: Item,
        job: _ItemWork,
        tracked: list[Window],
        running: dict[str, Decimal | None],
    ) -> None:
        """Move the request's running usage past this event (for the events after it)."""
        at = item.event.occurred_at
        for window in tracked:
            if not window.contains(at) or running.get(window.field) is None:
                continue
            step = item.event.usage_units if window.kind == "u" else job.overage
            running[window.field] = running[window.field] + step  # type: ignore[operator]

    def _reservations(self, batch: Batch, items: list[Item], work: _Work) -> None:
        wanted = {item.event.reservation_id for item in items if item.event.reservation_id}
        if not wanted:
            return
        found = {
            r.pk: r
            for r in scoped(Reservation.objects.select_for_update(), batch.environment.pk).filter(
                pk__in=wanted
            )
        }
        now = timezone.now()
        used: set[uuid.UUID] = set()
        for item in items:
            reservation_id = item.event.reservation_id
            if reservation_id is None:
                continue
            reservation = found.get(reservation_id)
            problem = None
            if reservation is None:
                problem = "unknown"
            elif (reservation.customer_id, reservation.feature_id) != (
                item.customer_id,
                item.feature_id,
            ):
                problem = "other_customer_or_feature"
            elif reservation.status != Reservation.Status.HELD or reservation_id in used:
                problem = "settled" if reservation.status == "settled" else reservation.status
            elif reservation.expires_at <= now:
                problem = "expired"
            item.add(ReservationSettlement(reservation_id, problem))
            if problem is not None:
                item.flags.reservation_not_settled = f"{reservation_id}: {problem}"
                continue
            used.add(reservation_id)
            item.reservation_id = reservation_id
            work.items[id(item)].reservation = reservation

    # -- after the store ------------------------------------------------------------------

    def after_store(self, batch: Batch) -> None:
        work: _Work | None = batch.state.get(NAME)
        if work is None:
            return
        charges: list[tuple[tuple[str, str], Item, Applied]] = []
        now = timezone.now()
        for item in batch.stored:
            job = work.items.get(id(item))
            if job is None:
                continue
            pair = (item.customer_id, item.feature_id)
            deltas = work.deltas.get(pair)
            if deltas is not None:
                at = item.event.occurred_at
                for window in work.tracked[pair]:
                    if window.contains(at):
                        step = item.event.usage_units if window.kind == "u" else job.overage
                        if step:
                            deltas.add(window.field, step)
            if job.reservation is not None:
                Reservation.objects.filter(pk=job.reservation.pk, status="held").update(
                    status=Reservation.Status.SETTLED,
                    settled_at=now,
                    event_id=item.event_id,
                    settled_units=item.event.usage_units,
                )
            applied = job.applied
            if _credit_backed(applied):
                assert applied is not None
                order = (str(item.customer_id), applied.rule.credit_denomination)
                charges.append((order, item, applied))
        stored = [i for _o, i, _a in charges]
        if (
            work.prepared is not None
            and len(stored) == len(work.credit_items)
            and all(a is b for a, b in zip(stored, work.credit_items, strict=True))
        ):
            from apps.credits.services import credits_commit_usage

            # Every prepared event was stored: write the prepared charges. None (a replay,
            # which only the general path answers right): nothing written, go on below.
            results = credits_commit_usage(
                work.prepared, [str(i.event_id) for i in work.credit_items]
            )
            if results is not None:
                for (_o, item, applied), result in zip(charges, results, strict=True):
                    _record_charge(item, applied, result)
                return
        if len(charges) == 1:
            _order, item, applied = charges[0]
            self._charge(batch.environment, item, applied)
        elif charges:
            self._charge_many(batch.environment, [(item, applied) for _o, item, applied in charges])

    @staticmethod
    def _charge_many(environment: Environment, charges: list[tuple[Item, Applied]]) -> None:
        """A batch: every charge in a fixed number of statements (pools locked in id order)."""
        from apps.credits.services import credits_deduct_for_usage_many

        results = credits_deduct_for_usage_many(
            environment=environment,
            charges=[_usage_charge(item, applied, str(item.event_id)) for item, applied in charges],
        )
        for (item, applied), result in zip(charges, results, strict=True):
            _record_charge(item, applied, result)

    @staticmethod
    def _charge(environment: Environment, item: Item, applied: Applied) -> None:
        from apps.credits.services import credits_deduct_for_usage

        try:
            result = credits_deduct_for_usage(
                environment=environment,
                customer_id=item.customer_id,
                feature_id=item.feature_id,
                model=item.event.model or None,
                units=item.event.usage_units,
                occurred_at=item.event.occurred_at,
                event_ref=str(item.event_id),
                denomination=applied.rule.credit_denomination,
                default_credits_per_unit=applied.rule.credits_per_unit,
            )
        except TansoError as exc:
            _record_charge(item, applied, exc)
            return
        _record_charge(item, applied, result)

    # -- after the commit -----------------------------------------------------------------

    def after_commit(self, batch: Batch) -> None:
        work: _Work | None = batch.state.get(NAME)
        if work is not None and work.deltas:
            counters.apply(list(work.deltas.values()))


def _credit_backed(applied: Applied | None) -> bool:
    return applied is not None and applied.rule.is_enabled and applied.rule.credit_backed


def _usage_charge(item: Item, applied: Applied | None, event_ref: str) -> Any:
    from apps.credits.services import UsageCharge

    assert applied is not None
    return UsageCharge(
        customer_id=item.customer_id,
        feature_id=item.feature_id,
        model=item.event.model or None,
        units=item.event.usage_units,
        occurred_at=item.event.occurred_at,
        event_ref=event_ref,
        denomination=applied.rule.credit_denomination,
        default_credits_per_unit=applied.rule.credits_per_unit,
    )


def _record_charge(item: Item, applied: Applied, result: DeductionResult | TansoError) -> None:
    denomination = applied.rule.credit_denomination
    if isinstance(result, TansoError):
        # No credit model for the denomination, ...: the event stands, uncharged.
        item.flags.credit_error = result.code
        item.add(CreditCharge(denomination, error=result))
        return
    item.add(CreditCharge(denomination, deduction=result))
    if result.insufficient:
        result.stamp(item.flags)
