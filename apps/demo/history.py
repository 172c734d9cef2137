"""The demo organization's history: two months of a small AI business, generated through
the product's own services so every page has something true to show.

What it makes (test environment of the demo organization):

* 6 features and 20 customers (``cus_123`` stays free for the quickstart);
* two plans -- ``starter`` ($49 a month, billed in advance) and ``scale`` ($299 a
  month, billed in arrears, its research agent backed by ``AGENT_CREDITS``) -- and 11
  subscriptions started on different days; the other 9 customers are Observe-style:
  their events carry ``revenueAmount``;
* usage of OpenAI, Anthropic and Google models with cache and reasoning tokens, and one
  self-hosted model the price catalog does not know (``acme-mt-v2``: stored unpriced);
  research-agent runs are multi-step traces (plan, research, tool call, check, answer);
* invoices issued by the billing cycle at each period boundary as it happened (run as of
  that instant), paid a few days later -- except by two customers who never pay (past
  due) and recent invoices not paid yet (due);
* credit pools: plan credits granted each period, spent by agent steps at ingestion,
  and credit packs bought by the heaviest users.

How: each simulated day, in order, (1) subscriptions that start that day are created, (2)
invoices whose payment day has come are marked paid, (3) the billing cycle runs as of
00:01 when a period boundary falls on that day, (4) credit packs bought that day are
granted, (5) the day's events go through the batch ingestion service with the demo
secret key, dated in the past (``occurredAt``). Everything is derived from a seeded RNG
per customer and day, and every write is idempotent (event idempotency keys, grant
source references, the billing cycle's own cursor), so a second load adds nothing.

:class:`~apps.demo.models.DemoHistory` remembers the generator version and the days
covered: a load with the same version on a day already covered returns at once; a
later day tops the history up to yesterday; a new :data:`VERSION` replays the whole
window (what exists already is kept, what the new version adds is added).

The billing task is a system job: as of a past instant it does for every tenant only
what the beat would already have done by now.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.accounts.audit import Actor
from apps.accounts.models import Environment
from apps.apikeys.models import ApiKey
from apps.apikeys.services import hash_key
from apps.billing.models import Invoice
from apps.billing.services import billing_settings_update, invoice_mark_paid
from apps.billing.tasks import run_billing_cycle
from apps.core.months import add_months
from apps.core.tenancy import scoped
from apps.credits.models import CreditModel, GrantType, PlanCreditAllocation, RolloverPolicy
from apps.credits.services import (
    credit_grant,
    credit_model_create,
    credit_pool_ensure,
    plan_allocation_set,
)
from apps.customers.models import Customer
from apps.customers.services import customer_create, customer_update
from apps.events.ingest import MAX_BATCH, events_ingest
from apps.features.models import Feature
from apps.features.services import feature_create
from apps.plans.models import Plan
from apps.plans.pricing import PricingModel, Rule, Tier
from apps.plans.services import RuleSpec, plan_activate, plan_create
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_create

from .models import DemoHistory

# Bump when the generator changes: the next load replays the window and adds what is new.
VERSION = 2
HISTORY_DAYS = 60
SEED = "tanso-demo"
ACTOR = Actor.system()
D = Decimal
CREDITS = "AGENT_CREDITS"
ONE = Decimal(1)
GRACE_DAYS = 10  # unpaid this long after the due date: past due

# -- the business --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DemoFeature:
    key: str
    name: str
    description: str
    unit_label: str
    list_price: Decimal  # what Observe customers pay per unit (revenueAmount)


FEATURES = (
    DemoFeature(
        "chat", "Support chat", "In-app assistant answering end users", "message", D("0.002")
    ),
    DemoFeature(
        "summarize",
        "Document summaries",
        "Long documents condensed to a page",
        "document",
        D("0.03"),
    ),
    DemoFeature(
        "search", "Semantic search", "Embeddings over the knowledge base", "query", D("0.00002")
    ),
    DemoFeature(
        "agent",
        "Research agent",
        "Multi-step agent: plan, research, check, answer",
        "step",
        D("0.035"),
    ),
    DemoFeature("code_review", "Code review", "Pull-request review comments", "review", D("0.06")),
    DemoFeature(
        "translate", "Translation", "UI strings and help articles", "1k characters", D("0.0008")
    ),
)


def _per_unit(price: str, **kwargs: Any) -> RuleSpec:
    return RuleSpec(rule=Rule(model=PricingModel.PER_UNIT, unit_price=D(price)), **kwargs)


PLANS: dict[str, dict[str, Any]] = {
    "starter": {
        "name": "Starter",
        "description": "For small teams: chat, summaries, search and translation",
        "price": D("49"),
        "timing": Plan.BillingTiming.IN_ADVANCE,
        "rules": {
            "chat": _per_unit("0.01"),
            "summarize": _per_unit("0.05"),
            "search": RuleSpec(rule=Rule(model=PricingModel.INCLUDED)),
            "translate": _per_unit("0.02"),
        },
    },
    "scale": {
        "name": "Scale",
        "description": "Every feature, volume pricing and research-agent credits",
        "price": D("299"),
        "timing": Plan.BillingTiming.IN_ARREARS,
        "rules": {
            "chat": RuleSpec(
                rule=Rule(
                    model=PricingModel.GRADUATED,
                    tiers=(Tier(up_to=D(2000), unit_price=D(0)), Tier(None, D("0.008"))),
                )
            ),
            "summarize": _per_unit("0.04"),
            "search": _per_unit("0.001"),
            "agent": _per_unit("0.04", credit_denomination=CREDITS, credits_per_unit=D(5)),
            "code_review": _per_unit("0.08"),
            "translate": _per_unit("0.015"),
        },
    },
}
PLAN_CREDITS = D(2000)  # AGENT_CREDITS per scale period


@dataclasses.dataclass(frozen=True)
class DemoCustomer:
    ref: str
    company: str
    first_name: str
    last_name: str
    plan: str | None  # None: Observe-style, its events carry revenueAmount
    joined: int  # day of the history its usage (and subscription) starts
    size: float  # mean events a weekday
    mix: dict[str, int]  # feature -> weight
    markup: Decimal = ONE  # Observe: price multiplier on the list price
    pays_after: int | None = 3  # days after issue an invoice is paid; None: never
    packs: tuple[int, ...] = ()  # days it buys a pack of AGENT_CREDITS

    @property
    def email(self) -> str:
        return f"{self.first_name.lower()}@{self.company.lower().replace(' ', '-')}.example"


_BASIC = {"chat": 6, "summarize": 2, "search": 3, "translate": 1}
_FULL = {"chat": 5, "summarize": 2, "search": 3, "agent": 1, "code_review": 2, "translate": 1}
CUSTOMERS = (
    DemoCustomer("cus_demo", "Demo Labs", "Dana", "Demo", "starter", 2, 10, _BASIC, pays_after=2),
    DemoCustomer(
        "cus_northwind",
        "Northwind",
        "Nora",
        "Quist",
        "scale",
        0,
        45,
        _FULL,
        pays_after=4,
        packs=(41,),
    ),
    DemoCustomer(
        "cus_globex",
        "Globex",
        "Hank",
        "Scorpio",
        "scale",
        4,
        38,
        _FULL,
        pays_after=6,
        packs=(30, 52),
    ),
    DemoCustomer(
        "cus_initech",
        "Initech",
        "Bill",
        "Lumbergh",
        "scale",
        9,
        22,
        {"code_review": 5, "chat": 2, "agent": 1},
        pays_after=None,
    ),
    DemoCustomer(
        "cus_umbrella",
        "Umbrella Health",
        "Alice",
        "Abernathy",
        "scale",
        15,
        18,
        {"summarize": 5, "search": 4, "agent": 1},
        pays_after=5,
    ),
    DemoCustomer(
        "cus_stark",
        "Stark Tools",
        "Pepper",
        "Potts",
        "scale",
        21,
        30,
        {"code_review": 3, "agent": 2, "chat": 2},
        pays_after=8,
        packs=(50,),
    ),
    DemoCustomer("cus_hooli", "Hooli", "Gavin", "Belson", "starter", 1, 14, _BASIC, pays_after=1),
    DemoCustomer(
        "cus_piedpiper",
        "Pied Piper",
        "Richard",
        "Hendricks",
        "starter",
        6,
        9,
        {"chat": 3, "search": 2},
        pays_after=3,
    ),
    DemoCustomer(
        "cus_vandelay",
        "Vandelay Import",
        "Art",
        "Vandelay",
        "starter",
        # Joined on day 25, it renews 28-31 days later: 1-7 days before today, whatever
        # today is, so the never-paid renewal is still due (inside GRACE_DAYS) while the
        # first invoice is past due.
        25,
        7,
        {"translate": 4, "chat": 1},
        pays_after=None,
    ),
    DemoCustomer(
        "cus_wonka",
        "Wonka Sweets",
        "Charlie",
        "Bucket",
        "starter",
        17,
        6,
        {"summarize": 3, "chat": 2},
        pays_after=7,
    ),
    DemoCustomer("cus_soylent", "Soylent", "Sol", "Roth", "starter", 26, 8, _BASIC, pays_after=2),
    DemoCustomer(
        "cus_tyrell",
        "Tyrell Research",
        "Eldon",
        "Tyrell",
        None,
        0,
        20,
        {"agent": 3, "summarize": 2},
        markup=D("1.6"),
    ),
    DemoCustomer(
        "cus_cyberdyne",
        "Cyberdyne",
        "Miles",
        "Dyson",
        None,
        0,
        26,
        {"code_review": 4, "chat": 1},
        markup=D("1.2"),
    ),
    DemoCustomer(
        "cus_aperture",
        "Aperture Science",
        "Cave",
        "Johnson",
        None,
        3,
        16,
        {"chat": 4, "search": 3},
        markup=D("3.0"),
    ),
    DemoCustomer(
        "cus_lumen",
        "Lumen Legal",
        "Lena",
        "Marsh",
        None,
        5,
        15,
        {"summarize": 6, "search": 1},
        markup=D("0.45"),
    ),
    DemoCustomer(
        "cus_oscorp",
        "Oscorp",
        "Otto",
        "Octavius",
        None,
        8,
        12,
        {"agent": 2, "code_review": 1},
        markup=D("0.5"),
    ),
    DemoCustomer(
        "cus_wayne",
        "Wayne Media",
        "Lucius",
        "Fox",
        None,
        12,
        11,
        {"translate": 5, "summarize": 1},
        markup=D("1.4"),
    ),
    DemoCustomer(
        "cus_acme_ai",
        "Acme Retail",
        "Wile",
        "Coyote",
        None,
        20,
        9,
        {"chat": 5, "translate": 2},
        markup=D("2.0"),
    ),
    DemoCustomer(
        "cus_duff",
        "Duff Studios",
        "Sam",
        "Duff",
        None,
        33,
        6,
        {"chat": 2, "summarize": 1},
        markup=D("1.1"),
    ),
    DemoCustomer(
        "cus_massive",
        "Massive Dynamic",
        "Nina",
        "Sharp",
        None,
        45,
        5,
        {"search": 3, "agent": 1},
        markup=D("1.8"),
    ),
)

# feature -> [(provider, model, weight)]
MODELS: dict[str, list[tuple[str, str, int]]] = {
    "chat": [("openai", "gpt-4o-mini", 6), ("anthropic", "claude-3-5-haiku", 3)],
    "summarize": [("google", "gemini-2.5-flash", 5), ("anthropic", "claude-sonnet-4-5", 2)],
    "search": [("openai", "text-embedding-3-small", 1)],
    "code_review": [("anthropic", "claude-sonnet-4-5", 4), ("openai", "o3-mini", 1)],
    "translate": [("google", "gemini-2.0-flash", 3), ("acme", "acme-mt-v2", 1)],
}
# The research agent's steps: (event name, provider, model)
AGENT_STEPS = (
    ("agent.plan", "anthropic", "claude-sonnet-4-5"),
    ("agent.research", "google", "gemini-2.5-pro"),
    ("agent.tool_call", "openai", "gpt-4o"),
    ("agent.check", "openai", "o3-mini"),
    ("agent.answer", "anthropic", "claude-sonnet-4-5"),
)


# -- generating events ---------------------------------------------------------------------


def _tokens(rng: random.Random, model: str, feature: str) -> dict[str, int]:
    """Plausible token counts for one call (cache within input, reasoning within output)."""
    r = rng.randint
    if model == "text-embedding-3-small":
        return {"inputTokens": r(40, 400), "outputTokens": 0}
    if model in {"gpt-4o-mini", "claude-3-5-haiku"}:
        inp, out = r(700, 2600), r(90, 520)
        counts = {"inputTokens": inp, "outputTokens": out, "cacheReadTokens": inp * r(0, 6) // 10}
        if model == "claude-3-5-haiku" and rng.random() < 0.1:
            # Cache reads and writes are both part of the prompt.
            counts["cacheWriteTokens"] = min(r(300, 800), inp - counts["cacheReadTokens"])
        return counts
    if model == "o3-mini":
        out = r(1200, 4500)
        return {
            "inputTokens": r(3000, 12000),
            "outputTokens": out,
            "reasoningTokens": out * 6 // 10,
        }
    if model in {"gemini-2.5-flash", "gemini-2.5-pro"}:
        out = r(300, 1800)
        return {
            "inputTokens": r(4000, 20000),
            "outputTokens": out,
            "reasoningTokens": out * r(2, 5) // 10,
        }
    if model == "claude-sonnet-4-5":
        big = feature in {"summarize", "code_review"}
        inp = r(8000, 32000) if big else r(2500, 9000)
        counts = {
            "inputTokens": inp,
            "outputTokens": r(300, 1600),
            "cacheReadTokens": inp * r(4, 8) // 10,
        }
        if rng.random() < 0.15:
            counts["cacheWriteTokens"] = inp // 5
        return counts
    # gpt-4o, gemini-2.0-flash, the unpriced acme-mt-v2
    return {"inputTokens": r(500, 4000), "outputTokens": r(150, 1500)}


def _weighted(rng: random.Random, choices: list[tuple[Any, int]]) -> Any:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _at(day: dt.date, seconds: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)


def day_events(customer: DemoCustomer, day: dt.date, index: int) -> list[dict[str, Any]]:
    """The events of ``customer`` on ``day`` (the ``index``-th day of the history): the same
    list every time (seeded by customer and date)."""
    if index < customer.joined:
        return []
    # Not for secrets: a seeded, reproducible stream.
    rng = random.Random(f"{SEED}:{customer.ref}:{day.isoformat()}")  # noqa: S311
    weekend = day.weekday() >= 5
    growth = 0.7 + 0.5 * index / HISTORY_DAYS
    mean = customer.size * growth * (0.35 if weekend else 1.0)
    count = max(0, round(rng.gauss(mean, mean * 0.25)))
    features = list(customer.mix.items())
    events: list[dict[str, Any]] = []
    for n in range(count):
        feature = _weighted(rng, features)
        # Office hours, UTC: most calls between 07:00 and 20:00.
        start = rng.randint(7 * 3600, 20 * 3600) if rng.random() < 0.85 else rng.randint(0, 86399)
        key = f"demo-{customer.ref}-{day:%Y%m%d}-{n:03d}"
        if feature == "agent":
            events.extend(_agent_run(rng, customer, day, start, key))
            continue
        provider, model = _weighted(rng, [((p, m), w) for p, m, w in MODELS[feature]])
        units = D(1)
        if feature == "translate":
            units = D(rng.randint(5, 60)) / 10
        events.append(
            _event(
                rng,
                customer=customer,
                feature=feature,
                key=key,
                name=f"{feature}.completion",
                at=_at(day, start),
                provider=provider,
                model=model,
                units=units,
                duration_ms=rng.randint(300, 9000),
            )
        )
    return events


def _agent_run(
    rng: random.Random, customer: DemoCustomer, day: dt.date, start: int, key: str
) -> Iterator[dict[str, Any]]:
    """One research-agent run: a trace of 3 to 5 steps, seconds apart."""
    steps = list(AGENT_STEPS)
    if rng.random() < 0.4:
        steps.remove(AGENT_STEPS[2])  # no tool call this time
    if rng.random() < 0.3:
        steps.remove(AGENT_STEPS[3])  # no check
    trace = f"trace_{key.removeprefix('demo-')}"
    at = _at(day, min(start, 86000))
    for position, (name, provider, model) in enumerate(steps):
        duration = rng.randint(800, 14000)
        event = _event(
            rng,
            customer=customer,
            feature="agent",
            key=f"{key}-{position}",
            name=name,
            at=at,
            provider=provider,
            model=model,
            units=ONE,
            duration_ms=duration,
        )
        event["traceId"] = trace
        event["meta"] = {"step": position + 1, "of": len(steps)}
        yield event
        at += dt.timedelta(milliseconds=duration + rng.randint(50, 400))


def _event(
    rng: random.Random,
    *,
    customer: DemoCustomer,
    feature: str,
    key: str,
    name: str,
    at: dt.datetime,
    provider: str,
    model: str,
    units: Decimal,
    duration_ms: int,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventIdempotencyKey": key,
        "eventName": name,
        "customerReferenceId": customer.ref,
        "featureKey": feature,
        "occurredAt": at.isoformat(),
        "model": model,
        "modelProvider": provider,
        "usageUnits": str(units),
        "durationMs": duration_ms,
        **_tokens(rng, model, feature),
    }
    if customer.plan is None:
        price = next(f.list_price for f in FEATURES if f.key == feature)
        event["revenueAmount"] = str((price * units * customer.markup).quantize(D("0.000001")))
    return event


# -- setting up the catalog ---------------------------------------------------------------


def _ensure_catalog(environment: Environment) -> None:
    """Features, customers, plans and the credit model (each created once)."""
    have = set(scoped(Feature, environment).values_list("key", "source"))
    for feature in FEATURES:
        if (feature.key, Feature.Source.MANUAL) not in have:
            feature_create(
                environment=environment,
                key=feature.key,
                name=feature.name,
                description=feature.description,
                unit_label=feature.unit_label,
                actor=ACTOR,
            )
    known = dict(scoped(Customer, environment).values_list("reference_id", "source"))
    for spec in CUSTOMERS:
        details: dict[str, Any] = {
            "email": spec.email,
            "first_name": spec.first_name,
            "last_name": spec.last_name,
            "metadata": {"company": spec.company},
        }
        if known.get(spec.ref, Customer.Source.EVENT) == Customer.Source.EVENT:
            # New, or named by an event first: customer_create claims it.
            customer_create(environment=environment, reference_id=spec.ref, actor=ACTOR, **details)
        elif (
            spec.ref == "cus_demo"
            and not scoped(Customer, environment)
            .filter(reference_id=spec.ref, metadata__has_key="company")
            .exists()
        ):
            # cus_demo predates the history (the ck_test key is pinned to it).
            customer = scoped(Customer, environment).get(reference_id=spec.ref)
            customer_update(customer=customer, actor=ACTOR, metadata={"company": spec.company})
    if not scoped(CreditModel, environment).filter(denomination=CREDITS).exists():
        credit_model_create(
            environment=environment,
            name="Agent credits",
            denomination=CREDITS,
            description="Research-agent steps: 5 credits a step",
            hard_limit=False,
            rollover_policy=RolloverPolicy.FULL,
            actor=ACTOR,
        )
    credit_model = scoped(CreditModel, environment).get(denomination=CREDITS)
    features = {f.key: f for f in scoped(Feature, environment)}
    for key, terms in PLANS.items():
        plan = scoped(Plan, environment).filter(key=key).first()
        if plan is None:
            plan = plan_create(
                environment=environment,
                key=key,
                name=terms["name"],
                description=terms["description"],
                price_amount=terms["price"],
                billing_timing=terms["timing"],
                features=[(features[f], rule) for f, rule in terms["rules"].items()],
                actor=ACTOR,
            )
        if plan.status == Plan.Status.DRAFT:
            plan_activate(plan=plan, actor=ACTOR)
    if (
        not scoped(PlanCreditAllocation, environment)
        .filter(plan_key="scale", credit_model=credit_model)
        .exists()
    ):
        plan_allocation_set(
            environment=environment,
            plan_key="scale",
            credit_model=credit_model,
            credit_amount=PLAN_CREDITS,
            actor=ACTOR,
        )


# -- the simulation -----------------------------------------------------------------------


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _boundaries(starts_on: dt.date, until: dt.date) -> set[dt.date]:
    """Days a demo subscription starts or renews on (the billing cycle has work then)."""
    days: set[dt.date] = set()
    for spec in CUSTOMERS:
        if spec.plan is None:
            continue
        first = starts_on + dt.timedelta(days=spec.joined)
        months = 0
        while (day := add_months(first, months)) <= until:
            days.add(day)
            months += 1
    return days


def _subscribe(environment: Environment, spec: DemoCustomer, day: dt.date) -> None:
    customer = scoped(Customer, environment).get(reference_id=spec.ref)
    if scoped(Subscription, environment).filter(customer=customer).exists():
        return
    subscription_create(
        environment=environment,
        customer=customer,
        plan=scoped(Plan, environment).get(key=spec.plan),
        grace_period_days=GRACE_DAYS,
        metadata={"source": "demo"},
        now=_midnight(day) + dt.timedelta(minutes=1),
        actor=ACTOR,
    )


def _pay_due(environment: Environment, through: dt.datetime) -> int:
    """Mark paid every open invoice whose customer pays it by ``through``."""
    delays = {spec.ref: spec.pays_after for spec in CUSTOMERS}
    paid = 0
    open_ = (
        scoped(Invoice, environment)
        .filter(
            status__in=[Invoice.Status.PENDING, Invoice.Status.DUE, Invoice.Status.PAST_DUE],
            issued_at__lt=through,
        )
        .select_related("customer")
    )
    for invoice in open_.order_by("issued_at", "sequence"):
        delay = delays.get(invoice.customer.reference_id)
        if delay is None:
            continue
        paid_at = invoice.issued_at + dt.timedelta(days=delay, hours=3)
        if paid_at > through:
            continue
        invoice_mark_paid(
            invoice=invoice, paid_at=paid_at, reference=f"wire-{invoice.number}", actor=ACTOR
        )
        paid += 1
    return paid


def _buy_packs(environment: Environment, index: int, day: dt.date) -> None:
    model = scoped(CreditModel, environment).get(denomination=CREDITS)
    for spec in CUSTOMERS:
        if index not in spec.packs:
            continue
        customer = scoped(Customer, environment).get(reference_id=spec.ref)
        pool = credit_pool_ensure(environment=environment, customer=customer, credit_model=model)
        credit_grant(
            pool=pool,
            amount=D(1000),
            grant_type=GrantType.PURCHASED,
            source_ref=f"demo-pack-{day:%Y%m%d}",
            unit_price=D("0.03"),
            currency="USD",
            description="Credit pack: 1,000 agent credits",
            granted_at=_midnight(day) + dt.timedelta(hours=9),
            actor=ACTOR,
        )


def _ingest(environment: Environment, key_id: Any, events: list[dict[str, Any]]) -> int:
    accepted = 0
    for start in range(0, len(events), MAX_BATCH):
        result = events_ingest(
            environment=environment, items=events[start : start + MAX_BATCH], api_key_id=key_id
        )
        if result.errors:
            raise RuntimeError(f"demo events refused: {result.errors[:3]}")
        accepted += result.accepted
    return accepted


@dataclasses.dataclass
class HistoryResult:
    days: int = 0  # days generated by this load (0: already up to date)
    events: int = 0  # events accepted (duplicates of earlier loads are not counted)
    invoices_paid: int = 0


def demo_history_load(
    *, environment: Environment, secret_key: str, now: dt.datetime | None = None
) -> HistoryResult:
    """Generate the demo history up to yesterday (idempotent; see the module docstring).

    ``secret_key``: the demo secret key, whose id the events carry as their writer.
    Each day commits on its own and moves the cursor, so an interrupted load resumes.
    """
    now = now or timezone.now()
    today = now.astimezone(dt.UTC).date()
    state = scoped(DemoHistory, environment).first()
    if state is not None and state.version == VERSION and state.loaded_through >= today:
        return HistoryResult()
    key_id = scoped(ApiKey, environment).get(secret_hash=hash_key(secret_key)).pk
    with transaction.atomic():
        if state is None:
            # Due on issue; a customer's own setting is left alone on later loads.
            billing_settings_update(environment=environment, payment_terms_days=0)
        _ensure_catalog(environment)
    if state is None:
        state = DemoHistory.objects.create(
            environment=environment,
            version=VERSION,
            starts_on=today - dt.timedelta(days=HISTORY_DAYS),
            loaded_through=today - dt.timedelta(days=HISTORY_DAYS),
        )
    first = state.starts_on if state.version != VERSION else state.loaded_through
    first = max(first, today - dt.timedelta(days=HISTORY_DAYS))
    boundaries = _boundaries(state.starts_on, today)
    result = HistoryResult()
    day = first
    while day < today:
        index = (day - state.starts_on).days
        with transaction.atomic():
            for spec in CUSTOMERS:
                if spec.plan is not None and spec.joined == index:
                    _subscribe(environment, spec, day)
            result.invoices_paid += _pay_due(environment, _midnight(day))
        if day in boundaries:
            run_billing_cycle(now=(_midnight(day) + dt.timedelta(minutes=2)).isoformat())
        with transaction.atomic():
            _buy_packs(environment, index, day)
        events = [event for spec in CUSTOMERS for event in day_events(spec, day, index)]
        result.events += _ingest(environment, key_id, events)
        day += dt.timedelta(days=1)
        result.days += 1
        DemoHistory.objects.filter(pk=state.pk).update(
            version=VERSION, loaded_through=day, updated_at=timezone.now()
        )
    with transaction.atomic():
        result.invoices_paid += _pay_due(environment, now)
    # Today's renewals and the statuses as of now: what the beat does every few minutes.
    run_billing_cycle(now=now.isoformat())
    return result
