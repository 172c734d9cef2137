"""Which plan rule applies to a customer's feature at an instant, from a per-process cache.

Checks and ingestion need, per customer, the subscriptions in force and the
rules of their plans. Reading them costs two queries; they change rarely, so
each process keeps them, per environment, tagged with the environment's
*state token*:

* the token lives in Redis (``tanso:{env}:ent:state``); any change to a plan,
  rule, subscription or plan change of the environment replaces it on commit
  (``apps.entitlements.signals``) and drops this process's copy;
* every check and every ingestion request of a Platform environment reads the
  token in the same Redis round trip as its usage counters; a copy made under
  another token is reloaded. So a subscription is in force for the next request
  after the call that made it returned, in every process;
* with Redis unreachable the token cannot be checked: state is read from
  PostgreSQL on every request (correct, slower).

Periods move with time, not with writes: the cache keeps each subscription's
:class:`~apps.subscriptions.in_force.Terms`, and the plan, status and period in
force at the instant come from :func:`~apps.subscriptions.in_force.in_force_at`
on each use (:meth:`CustomerState.applicable`), the usage-cap window from them.

*Platform environments.* An environment that has never had a subscription
("Observe only") skips all of this: :func:`is_platform` answers from a
per-process flag re-read from PostgreSQL every ``OBSERVE_RECHECK`` seconds. An
environment becomes Platform for good at its first subscription.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING

import redis
from django.db.models import Min

from apps.core.memo import LocalCache
from apps.core.redis import env_key, get_redis
from apps.core.tenancy import scoped
from apps.plans.models import PlanFeatureRule
from apps.plans.pricing import Rule
from apps.subscriptions.in_force import InForce, Terms, in_force_at
from apps.subscriptions.models import Subscription
from apps.subscriptions.periods import cap_window
from apps.subscriptions.selectors import subscription_terms

if TYPE_CHECKING:
    from apps.accounts.models import Environment

logger = logging.getLogger(__name__)

# An Observe-only environment re-reads "has it any subscription?" this often per process.
OBSERVE_RECHECK = 5.0
# Usage counters are not built during this long after an environment's first
# subscription: a request that began while this process still saw the environment
# as Observe-only (at most OBSERVE_RECHECK ago) may not have taken the counter
# locks. Checks answer from PostgreSQL meanwhile.
YOUNG_PLATFORM = dt.timedelta(seconds=60)
MAX_CUSTOMERS = 50_000  # per environment per process; the cache is dropped beyond

LIVE = tuple(str(s) for s in Subscription.LIVE_STATUSES)


def state_key(environment_id: uuid.UUID) -> str:
    return env_key(environment_id, "ent", "state")


@dataclasses.dataclass(frozen=True, slots=True)
class RuleState:
    """One plan x feature rule."""

    rule_id: uuid.UUID
    plan_id: uuid.UUID
    plan_key: str
    currency: str
    feature_id: uuid.UUID
    feature_key: str
    is_enabled: bool
    rule: Rule
    reset_interval: str
    credit_denomination: str  # "" when not credit-backed
    credits_per_unit: Decimal | None

    @property
    def credit_backed(self) -> bool:
        return bool(self.credit_denomination)


@dataclasses.dataclass(frozen=True, slots=True)
class Applied:
    """The rule that applies to one feature of one customer at ``at``."""

    subscription_id: uuid.UUID
    status: str  # trialing, active or past_due at ``at``
    rule: RuleState
    period_start: dt.datetime
    period_end: dt.datetime
    window_start: dt.datetime  # the usage-cap window (the period when uncapped)
    window_end: dt.datetime | None  # None: never resets

    @property
    def capped(self) -> bool:
        return self.rule.rule.max_usage is not None

    @property
    def cap_is_period(self) -> bool:
        return (self.window_start, self.window_end) == (self.period_start, self.period_end)


@dataclasses.dataclass(slots=True)
class CustomerState:
    customer_id: uuid.UUID
    subscriptions: tuple[Terms, ...]
    rules: dict[uuid.UUID, dict[str, RuleState]]  # plan id -> feature key -> rule
    intervals: dict[uuid.UUID, int]  # plan id -> interval in months

    @property
    def subscribed(self) -> bool:
        return bool(self.subscriptions)

    def _in_force(self, at: dt.datetime) -> list[InForce]:
        found = (in_force_at(terms, at, self.intervals) for terms in self.subscriptions)
        return [state for state in found if state is not None]

    def has_subscription_at(self, at: dt.datetime) -> bool:
        return bool(self._in_force(at))

    def status_at(self, at: dt.datetime) -> str | None:
        """The status of the first subscription in force at ``at`` (None without one)."""
        live = self._in_force(at)
        return live[0].status if live else None

    def applicable(self, feature_key: str, at: dt.datetime) -> Applied | None:
        """The first subscription in force at ``at`` (by start) whose plan has a rule for
        the feature, with the period and cap window containing ``at``."""
        for state in self._in_force(at):
            rule = self.rules.get(state.plan_id, {}).get(feature_key)
            if rule is None:
                continue
            start, end = state.period_start, state.period_end
            window_start, window_end = cap_window(
                rule.reset_interval,
                at=at,
                period_start=start,
                period_end=end,
                started_at=state.started_at,
            )
            return Applied(
                state.subscription_id, state.status, rule, start, end, window_start, window_end
            )
        return None

    def features_at(self, at: dt.datetime) -> list[str]:
        """Feature keys of the plans in force at ``at`` (sorted, without repeats)."""
        keys: set[str] = set()
        for state in self._in_force(at):
            keys.update(self.rules.get(state.plan_id, {}))
        return sorted(keys)


# -- loading ------------------------------------------------------------------------------


def load_customers(
    environment_id: uuid.UUID, customer_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, CustomerState]:
    """Read the customers' live subscriptions and their plans' rules. Two queries."""
    subs = subscription_terms(environment_id, customer_ids)
    plan_ids = {t.plan_id for found in subs.values() for t in found} | {
        t.pending_plan_id for found in subs.values() for t in found if t.pending_plan_id
    }
    rules: dict[uuid.UUID, dict[str, RuleState]] = {plan_id: {} for plan_id in plan_ids}
    intervals: dict[uuid.UUID, int] = {}
    if plan_ids:
        for rule in (
            scoped(PlanFeatureRule, environment_id)
            .filter(plan_id__in=plan_ids)
            .select_related("feature", "plan")
        ):
            intervals[rule.plan_id] = rule.plan.interval_months
            rules[rule.plan_id][rule.feature.key] = RuleState(
                rule_id=rule.pk,
                plan_id=rule.plan_id,
                plan_key=rule.plan.key,
                currency=rule.plan.currency,
                feature_id=rule.feature_id,
                feature_key=rule.feature.key,
                is_enabled=rule.is_enabled,
                rule=rule.pricing_rule(),
                reset_interval=rule.reset_interval,
                credit_denomination=rule.credit_denomination,
                credits_per_unit=rule.credits_per_unit,
            )
    return {
        customer_id: CustomerState(customer_id, tuple(found), rules, intervals)
        for customer_id, found in subs.items()
    }


# -- the per-process cache -----------------------------------------------------------------


@dataclasses.dataclass
class EnvState:
    platform: bool
    platform_since: dt.datetime | None
    checked_at: float  # monotonic: when ``platform`` was last read
    token: bytes | None = None  # the Redis state token the customers were read under
    customers: dict[uuid.UUID, CustomerState] = dataclasses.field(default_factory=dict)

    def counters_allowed(self, now: dt.datetime) -> bool:
        return self.platform_since is not None and now - self.platform_since >= YOUNG_PLATFORM


# Environment id -> its state; customers fresh while the Redis token matches.
_envs: LocalCache[object, EnvState] = LocalCache("entitlements.state", max_entries=10_000)


def _first_subscription(environment_id: uuid.UUID) -> dt.datetime | None:
    return scoped(Subscription, environment_id).aggregate(first=Min("created_at"))["first"]


def env_state(environment_id: uuid.UUID) -> EnvState:
    """This process's state of the environment (its Platform flag re-read when stale)."""
    state = _envs.get(environment_id)
    now = time.monotonic()
    if state is not None and (state.platform or now - state.checked_at < OBSERVE_RECHECK):
        return state
    first = _first_subscription(environment_id)
    state = EnvState(platform=first is not None, platform_since=first, checked_at=now)
    _envs.set(environment_id, state)
    return state


def is_platform(environment: Environment) -> bool:
    """Whether the environment has ever had a subscription (cheap: cached per process)."""
    return env_state(environment.pk).platform


def read_token(environment_id: uuid.UUID) -> bytes | None:
    """The environment's state token (created when absent); None when Redis is down."""
    try:
        client = get_redis()
        token = client.get(state_key(environment_id))
        if token is None:
            fresh = uuid.uuid4().hex.encode()
            client.set(state_key(environment_id), fresh, nx=True)
            token = client.get(state_key(environment_id))
        return token if isinstance(token, bytes) or token is None else str(token).encode()
    except redis.RedisError:
        return None


def customers(
    environment_id: uuid.UUID, customer_ids: Iterable[uuid.UUID], token: bytes | None
) -> dict[uuid.UUID, CustomerState]:
    """The customers' states, valid under ``token`` (None: Redis down, read them afresh)."""
    ids = set(customer_ids)
    if token is None:
        return load_customers(environment_id, ids)
    state = env_state(environment_id)
    if state.token != token or len(state.customers) > MAX_CUSTOMERS:
        state.customers = {}
        state.token = token
    cached = state.customers
    missing = [customer_id for customer_id in ids if customer_id not in cached]
    if missing:
        loaded = load_customers(environment_id, missing)
        if state.token == token:
            cached.update(loaded)
        return {**{c: cached[c] for c in ids if c in cached}, **loaded}
    return {customer_id: cached[customer_id] for customer_id in ids}


def peek(environment_id: uuid.UUID, customer_id: uuid.UUID) -> CustomerState | None:
    """This process's cached state of a customer, if any (no I/O; it may be stale)."""
    state = _envs.get(environment_id)
    return None if state is None else state.customers.get(customer_id)


def state_changed(environment_id: uuid.UUID) -> None:
    """Forget this process's copy and give the environment a new token (after a commit that
    changed plans, rules or subscriptions)."""
    _envs.pop(environment_id)
    try:
        get_redis().set(state_key(environment_id), uuid.uuid4().hex)
    except redis.RedisError:
        # Other processes keep their copy until Redis answers again and they see a new
        # token; while it is down they read from PostgreSQL anyway.
        logger.warning("entitlements: cannot renew the state token of %s", environment_id)
