"""Writes for Stripe-driven billing: provisioning Stripe objects, and sending usage.

Provisioning (Celery tasks only: every function here calls Stripe, never inside a
transaction other requests wait on). Each Stripe object is made once:

* a mapping row (our id <-> Stripe id, unique both ways) is looked up first and
  written right after Stripe answers, ``ON CONFLICT DO NOTHING``;
* every write carries an idempotency key derived from our object and the action
  (``tanso-<kind>-<our id>-create``), so a run that died between Stripe's answer
  and our row, or two runs at once, get Stripe's first object back, not a second.

What a plan becomes (:func:`stripe_plan_provision`): a product, a licensed base
price (the plan's price and interval) and, per usage rule, a metered price on the
feature's meter: ``per_unit`` -> ``unit_amount_decimal``; ``graduated`` / ``volume``
-> ``billing_scheme=tiered`` with that ``tiers_mode`` (tier ``up_to`` in units,
``unit_amount_decimal``, ``flat_amount`` in minor units); ``package`` -> the price of
a block with ``transform_quantity`` (``divide_by`` the block size, ``round=up``). A
cap per billing period on a per-unit or graduated rule becomes a tier boundary (the
overage price beyond it, or 0 under a hard cap). What Stripe cannot express (tier
bounds in fractions of a unit, flat fees in fractions of a minor unit, caps reset on
another interval, volume tiers with caps) is recorded as the rule's ``problem`` and
not priced. Meters: one per feature, event name ``tanso_<featureKey>``, ``sum``,
customer by the payload key ``stripe_customer_id``.

Sending (:func:`meter_events_send`): pending outbox rows of an environment are
claimed ``FOR UPDATE SKIP LOCKED`` (two workers never take the same row) and each
is sent as ``{event_name, payload {stripe_customer_id, value}, identifier,
timestamp}`` with the row's identifier as the idempotency key too. Stripe refuses a
second event with an identifier it has: a row sent before a crash, resent, is
refused as a duplicate and marked sent. Connection errors, rate limits and
Stripe's 5xx leave the row pending with a backoff (the task retries); other
refusals mark it failed with Stripe's message (flagged, not fatal).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import re
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar, cast

import stripe
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts.audit import Actor
from apps.billing.models import BillingSettings, StripeMode
from apps.core.money import currency_exponent, decimal_str
from apps.core.tenancy import scoped
from apps.customers.models import Customer
from apps.customers.services import customer_update
from apps.features.models import Feature
from apps.plans import pricing
from apps.plans.models import Plan, PlanFeatureRule
from apps.stripe_sync.client import stripe_client
from apps.stripe_sync.client import write_options as _write_options
from apps.subscriptions.models import Subscription

from .models import (
    MeterEvent,
    StripeCustomer,
    StripeMeter,
    StripePlan,
    StripeRulePrice,
    StripeSubscription,
    meter_event_identifier,
)

if TYPE_CHECKING:
    from apps.accounts.models import Environment

logger = logging.getLogger(__name__)

SYSTEM = Actor.system()
CUSTOMER_PAYLOAD_KEY = "stripe_customer_id"
VALUE_PAYLOAD_KEY = "value"
SEND_BATCH = 100
MAX_ATTEMPTS = 10
BACKOFF_BASE = dt.timedelta(seconds=5)
BACKOFF_MAX = dt.timedelta(hours=1)
MAX_SUBSCRIPTION_ITEMS = 20  # Stripe's limit per subscription
_EVENT_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
_Mapping = TypeVar("_Mapping", bound=models.Model)


def write_options(*parts: object) -> stripe.RequestOptions:
    """The write's idempotency key (``apps.stripe_sync.client.write_options``), typed."""
    return cast("stripe.RequestOptions", _write_options(*parts))


class NotStripeDriven(Exception):
    """The environment is not (or no longer) in Stripe-driven mode: nothing to do."""


def is_stripe_driven(environment_id: Any) -> bool:
    return (
        scoped(BillingSettings, environment_id)
        .filter(stripe_mode=StripeMode.STRIPE_DRIVEN)
        .exists()
    )


def _require_stripe_driven(environment_id: Any) -> None:
    if not is_stripe_driven(environment_id):
        raise NotStripeDriven(str(environment_id))


def _minor(amount: Decimal, currency: str) -> Decimal:
    """Major units -> minor units, exact (Stripe's amounts are in minor units)."""
    return amount.scaleb(currency_exponent(currency))


def _whole(value: Decimal) -> bool:
    return value == value.to_integral_value()


def meter_event_name(feature_key: str) -> str:
    """``tanso_<featureKey>``; a key Stripe's 100 characters cannot hold as is gets a hash."""
    clean = _EVENT_NAME_CHARS.sub("_", feature_key)
    name = f"tanso_{clean}"
    if clean == feature_key and len(name) <= 100:
        return name
    digest = hashlib.sha1(feature_key.encode()).hexdigest()[:10]  # noqa: S324 - a name, not a secret
    return f"tanso_{clean[:80]}_{digest}"


# -- customers ------------------------------------------------------------------------------


def _map_once(row: _Mapping, stripe_id: str) -> _Mapping:
    """Write a mapping row (its primary key is our object) ``ON CONFLICT DO NOTHING`` and
    return the row stored for our object: this one, or a concurrent run's. Raises when
    the conflict was on the Stripe side (``stripe_id`` mapped to another of our objects)."""
    rows = type(row)._default_manager
    rows.bulk_create([row], ignore_conflicts=True)
    stored = rows.filter(pk=row.pk).first()
    if stored is None:
        raise ValueError(
            f"{type(row).__name__}: Stripe {stripe_id} is mapped to another of our objects"
        )
    return stored


def stripe_customer_provision(*, customer: Customer) -> StripeCustomer:
    """The customer's Stripe customer: the one it names (``stripe_customer_id``), or one
    made now (and written back on the customer). Unblocks its waiting meter events."""
    _require_stripe_driven(customer.environment_id)
    link = StripeCustomer.objects.filter(customer_id=customer.pk).first()
    if link is not None:
        return link
    if customer.stripe_customer_id:
        stripe_id, created = customer.stripe_customer_id, False
    else:
        client = stripe_client(customer.environment_id)
        name = " ".join(p for p in (customer.first_name, customer.last_name) if p)
        params: Any = {
            "name": name or customer.reference_id,
            "metadata": {
                "tanso_customer_id": str(customer.pk),
                "tanso_reference_id": customer.reference_id,
                "tanso_environment_id": str(customer.environment_id),
            },
        }
        if customer.email:
            params["email"] = customer.email
        made = client.v1.customers.create(
            params=params, options=write_options("customer", customer.pk, "create")
        )
        stripe_id, created = str(made.id), True
    with transaction.atomic():
        link = _map_once(
            StripeCustomer(
                environment_id=customer.environment_id,
                customer=customer,
                stripe_customer_id=stripe_id,
                created_in_stripe=created,
            ),
            stripe_id,
        )
        if created:
            locked = Customer.objects.select_for_update().get(pk=customer.pk)
            if not locked.stripe_customer_id:
                customer_update(customer=locked, actor=SYSTEM, stripe_customer_id=stripe_id)
        _unblock(customer.environment_id, Q(customer_id=customer.pk))
    return link


# -- meters, products, prices ----------------------------------------------------------------


def _find_meter(client: stripe.StripeClient, event_name: str) -> Any | None:
    """An active meter of the account with this event name (adopted: event names are
    unique per Stripe account, and a meter cannot be deleted)."""
    for meter in client.v1.billing.meters.list(
        params={"status": "active", "limit": 100}
    ).auto_paging_iter():
        if meter.event_name == event_name:
            return meter
    return None


def stripe_meter_provision(
    *, feature: Feature, client: stripe.StripeClient | None = None
) -> StripeMeter:
    """The feature's Stripe meter (made once; unblocks its waiting meter events)."""
    _require_stripe_driven(feature.environment_id)
    link = StripeMeter.objects.filter(feature_id=feature.pk).first()
    if link is not None:
        return link
    client = client or stripe_client(feature.environment_id)
    event_name = meter_event_name(feature.key)
    meter: Any
    try:
        meter = client.v1.billing.meters.create(
            params={
                "display_name": (feature.name or feature.key)[:250],
                "event_name": event_name,
                "default_aggregation": {"formula": "sum"},
                "customer_mapping": {"event_payload_key": CUSTOMER_PAYLOAD_KEY, "type": "by_id"},
                "value_settings": {"event_payload_key": VALUE_PAYLOAD_KEY},
            },
            options=write_options("meter", feature.pk, "create"),
        )
    except stripe.InvalidRequestError as exc:
        meter = _find_meter(client, event_name)
        if meter is None:
            raise
        logger.info("stripe meter %s adopted (%s)", meter.id, exc.code)
    with transaction.atomic():
        link = _map_once(
            StripeMeter(
                environment_id=feature.environment_id,
                feature=feature,
                stripe_meter_id=str(meter.id),
                event_name=event_name,
            ),
            str(meter.id),
        )
        _unblock(feature.environment_id, Q(feature_id=feature.pk))
    return link


def _recurring(plan: Plan) -> dict[str, Any]:
    return {"interval": "year" if plan.interval_months == 12 else "month", "interval_count": 1}


def _amount_params(amount_minor: Decimal, prefix: str = "unit_amount") -> dict[str, Any]:
    if _whole(amount_minor):
        return {prefix: int(amount_minor)}
    return {f"{prefix}_decimal": decimal_str(amount_minor)}


def _tier_params(
    tiers: list[pricing.Tier], currency: str
) -> tuple[list[dict[str, Any]] | None, str]:
    out: list[dict[str, Any]] = []
    for tier in tiers:
        if tier.up_to is not None and not _whole(tier.up_to):
            return None, "Stripe tiers end on whole units; this rule has a fractional upTo."
        flat = _minor(tier.flat_fee, currency)
        if not _whole(flat):
            return None, "Stripe flat fees are whole minor units; this rule's flatFee is not."
        row: dict[str, Any] = {
            "up_to": "inf" if tier.up_to is None else int(tier.up_to),
            **_amount_params(_minor(tier.unit_price, currency)),
        }
        if flat:
            row["flat_amount"] = int(flat)
        out.append(row)
    return out, ""


def _with_cap(rule: pricing.Rule) -> tuple[list[pricing.Tier] | None, str]:
    """Per-unit or graduated tiers with the cap as a boundary (overage price beyond it)."""
    cap = rule.max_usage
    assert cap is not None
    beyond = rule.overage_unit_price or Decimal(0)
    if rule.model == pricing.PricingModel.PER_UNIT:
        return [
            pricing.Tier(up_to=cap, unit_price=rule.unit_price or Decimal(0)),
            pricing.Tier(up_to=None, unit_price=beyond),
        ], ""
    if rule.model == pricing.PricingModel.GRADUATED:
        tiers: list[pricing.Tier] = []
        for tier in rule.tiers:
            if tier.up_to is not None and tier.up_to < cap:
                tiers.append(tier)
                continue
            tiers.append(
                pricing.Tier(up_to=cap, unit_price=tier.unit_price, flat_fee=tier.flat_fee)
            )
            break
        tiers.append(pricing.Tier(up_to=None, unit_price=beyond))
        return tiers, ""
    return None, f"A usage cap on a {rule.model} rule has no Stripe price."


def rule_price_params(rule_row: PlanFeatureRule, plan: Plan) -> tuple[dict[str, Any] | None, str]:
    """The Stripe price of a usage rule (without product, meter and recurring), or why
    there is none. ``None, ""``: the rule bills nothing (included, disabled)."""
    rule = rule_row.pricing_rule()
    if not rule_row.is_enabled or rule.model == pricing.PricingModel.INCLUDED:
        return None, ""
    currency = plan.currency
    model = rule.model
    tiers: list[pricing.Tier] | None = list(rule.tiers)
    if rule.max_usage is not None:
        if rule_row.reset_interval != PlanFeatureRule.ResetInterval.BILLING_PERIOD:
            return None, "A usage cap reset on its own interval has no Stripe price."
        if model == pricing.PricingModel.PACKAGE:
            return None, "A usage cap on a package rule has no Stripe price."
        tiers, problem = _with_cap(rule)
        if tiers is None:
            return None, problem
        model = pricing.PricingModel.GRADUATED
    if model == pricing.PricingModel.PER_UNIT:
        return _amount_params(_minor(rule.unit_price or Decimal(0), currency)), ""
    if model == pricing.PricingModel.PACKAGE:
        return {
            **_amount_params(_minor(rule.unit_price or Decimal(0), currency)),
            "transform_quantity": {"divide_by": int(rule.package_size or 1), "round": "up"},
        }, ""
    rows, problem = _tier_params(tiers or [], currency)
    if rows is None:
        return None, problem
    return {"billing_scheme": "tiered", "tiers_mode": str(model), "tiers": rows}, ""


def stripe_plan_provision(*, plan: Plan) -> StripePlan:
    """The plan's product, base price, meters and metered prices in Stripe (each made once)."""
    _require_stripe_driven(plan.environment_id)
    client = stripe_client(plan.environment_id)
    link = StripePlan.objects.filter(plan_id=plan.pk).first()
    if link is None:
        product = client.v1.products.create(
            params={
                "name": plan.name or plan.key,
                "metadata": {"tanso_plan_id": str(plan.pk), "tanso_plan_key": plan.key},
            },
            options=write_options("plan", plan.pk, "product"),
        )
        base_params: Any = {
            "currency": plan.currency.lower(),
            "product": str(product.id),
            "recurring": {**_recurring(plan), "usage_type": "licensed"},
            "nickname": f"{plan.key}: base price",
            "metadata": {"tanso_plan_id": str(plan.pk)},
            **_amount_params(_minor(plan.price_amount, plan.currency)),
        }
        base = client.v1.prices.create(
            params=base_params, options=write_options("plan", plan.pk, "base-price")
        )
        link = _map_once(
            StripePlan(
                environment_id=plan.environment_id,
                plan=plan,
                stripe_product_id=str(product.id),
                stripe_base_price_id=str(base.id),
            ),
            str(product.id),
        )
    done = set(StripeRulePrice.objects.filter(plan_id=plan.pk).values_list("rule_id", flat=True))
    rules = (
        PlanFeatureRule.objects.filter(plan_id=plan.pk)
        .exclude(pk__in=done)
        .select_related("feature")
        .order_by("feature__key")
    )
    for rule_row in rules:
        params, problem = rule_price_params(rule_row, plan)
        if params is None and not problem:
            continue
        price_id = ""
        if params is not None:
            meter = stripe_meter_provision(feature=rule_row.feature, client=client)
            price_params: Any = {
                "currency": plan.currency.lower(),
                "product": link.stripe_product_id,
                "recurring": {
                    **_recurring(plan),
                    "usage_type": "metered",
                    "meter": meter.stripe_meter_id,
                },
                "nickname": f"{plan.key}: {rule_row.feature.key}",
                "metadata": {
                    "tanso_plan_id": str(plan.pk),
                    "tanso_rule_id": str(rule_row.pk),
                    "tanso_feature_key": rule_row.feature.key,
                },
                **params,
            }
            price = client.v1.prices.create(
                params=price_params, options=write_options("rule", rule_row.pk, "price")
            )
            price_id = str(price.id)
        else:
            logger.info("stripe: rule %s of plan %s not priced: %s", rule_row.pk, plan.key, problem)
        _map_once(
            StripeRulePrice(
                environment_id=plan.environment_id,
                rule=rule_row,
                plan=plan,
                feature=rule_row.feature,
                stripe_price_id=price_id,
                problem=problem if not price_id else "",
            ),
            price_id,
        )
    return link


# -- subscriptions ----------------------------------------------------------------------------


def stripe_subscription_provision(*, subscription: Subscription) -> StripeSubscription | None:
    """The subscription in Stripe: its customer, its plan, then a Stripe subscription with
    the base price and the plan's metered prices (``payment_behavior=default_incomplete``:
    Stripe issues the first invoice and collects it). None for a cancelled subscription
    that never reached Stripe."""
    _require_stripe_driven(subscription.environment_id)
    link = StripeSubscription.objects.filter(subscription_id=subscription.pk).first()
    if link is not None:
        return link
    if not subscription.is_live:
        return None
    customer = stripe_customer_provision(customer=subscription.customer)
    plan_link = stripe_plan_provision(plan=subscription.plan)
    prices = list(
        StripeRulePrice.objects.filter(plan_id=subscription.plan_id)
        .exclude(stripe_price_id="")
        .order_by("feature__key")
        .values_list("stripe_price_id", flat=True)
    )
    items = [{"price": plan_link.stripe_base_price_id}] + [{"price": p} for p in prices]
    if len(items) > MAX_SUBSCRIPTION_ITEMS:
        raise ValueError(f"Stripe takes at most {MAX_SUBSCRIPTION_ITEMS} prices per subscription")
    params: Any = {
        "customer": customer.stripe_customer_id,
        "items": items,
        "payment_behavior": "default_incomplete",
        "metadata": {
            "tanso_subscription_id": str(subscription.pk),
            "tanso_plan_key": subscription.plan.key,
        },
    }
    now = timezone.now()
    if subscription.trial_ends_at is not None and subscription.trial_ends_at > now:
        params["trial_end"] = int(subscription.trial_ends_at.timestamp())
    elif subscription.current_period_start < now:
        # Stripe's periods start where ours do (00:00 UTC of the first day).
        params["backdate_start_date"] = int(subscription.current_period_start.timestamp())
    client = stripe_client(subscription.environment_id)
    made = client.v1.subscriptions.create(
        params=params, options=write_options("subscription", subscription.pk, "create")
    )
    return _map_once(
        StripeSubscription(
            environment_id=subscription.environment_id,
            subscription=subscription,
            stripe_subscription_id=str(made.id),
            stripe_status=str(made.status or ""),
        ),
        str(made.id),
    )


def stripe_subscription_cancel(*, subscription: Subscription) -> StripeSubscription | None:
    """Cancel the Stripe subscription of a subscription that ended here (once)."""
    link = StripeSubscription.objects.filter(subscription_id=subscription.pk).first()
    if link is None or link.cancelled_at is not None or subscription.is_live:
        return link
    client = stripe_client(subscription.environment_id)
    try:
        cancelled = client.v1.subscriptions.cancel(
            link.stripe_subscription_id,
            options=write_options("subscription", subscription.pk, "cancel"),
        )
        status = str(cancelled.status or "canceled")
    except stripe.InvalidRequestError as exc:
        if exc.http_status != 404:
            raise
        status = "missing"
    StripeSubscription.objects.filter(pk=link.pk, cancelled_at__isnull=True).update(
        cancelled_at=timezone.now(), stripe_status=status, updated_at=timezone.now()
    )
    link.refresh_from_db()
    return link


@dataclasses.dataclass
class ProvisionResult:
    customers: int = 0
    plans: int = 0
    subscriptions: int = 0
    cancelled: int = 0


def stripe_environment_provision(*, environment: Environment | Any) -> ProvisionResult:
    """Catch up an environment: customers whose usage waits for a Stripe customer, every
    active plan, every live subscription, every subscription that ended here but not in
    Stripe (idempotent)."""
    env_id: Any = getattr(environment, "pk", environment)
    _require_stripe_driven(env_id)
    result = ProvisionResult()
    waiting = (
        scoped(MeterEvent, env_id).filter(status=MeterEvent.Status.BLOCKED).values("customer_id")
    )
    for customer in (
        scoped(Customer, env_id)
        .filter(pk__in=waiting)
        .exclude(pk__in=scoped(StripeCustomer, env_id).values("customer_id"))
    ):
        stripe_customer_provision(customer=customer)
        result.customers += 1
    for plan in scoped(Plan, env_id).filter(status=Plan.Status.ACTIVE):
        stripe_plan_provision(plan=plan)
        result.plans += 1
    linked = scoped(StripeSubscription, env_id)
    for subscription in (
        scoped(Subscription, env_id)
        .filter(status__in=Subscription.LIVE_STATUSES)
        .exclude(pk__in=linked.values("subscription_id"))
        .select_related("customer", "plan")
    ):
        stripe_subscription_provision(subscription=subscription)
        result.subscriptions += 1
    for link in linked.filter(cancelled_at__isnull=True).exclude(
        subscription__status__in=Subscription.LIVE_STATUSES
    ):
        stripe_subscription_cancel(subscription=link.subscription)
        result.cancelled += 1
    return result


# -- sending usage ----------------------------------------------------------------------------


def _unblock(environment_id: Any, which: Q) -> int:
    """Blocked meter events waiting for a mapping just made go back to pending."""
    return (
        scoped(MeterEvent, environment_id)
        .filter(status=MeterEvent.Status.BLOCKED)
        .filter(which)
        .update(status=MeterEvent.Status.PENDING, next_attempt_at=timezone.now(), last_error="")
    )


def backoff(attempts: int) -> dt.timedelta:
    """Wait before attempt ``attempts + 1``: 5 s, 10 s, 20 s ... at most an hour."""
    return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)


def _is_duplicate(exc: stripe.InvalidRequestError) -> bool:
    """Stripe refused the event because it has one with this identifier."""
    if exc.code == "resource_already_exists" and (exc.param or "") == "identifier":
        return True
    text = str(exc.user_message or "").lower()
    return "identifier" in text and "already" in text


def _message(exc: stripe.StripeError) -> str:
    return f"{exc.__class__.__name__}: {exc.user_message or exc}"[:1000]


@dataclasses.dataclass
class SendResult:
    sent: int = 0
    duplicates: int = 0  # Stripe had them already (a resend): counted as sent
    failed: int = 0
    blocked: int = 0
    retry_in: dt.timedelta | None = None  # Stripe unreachable: try again after this


def meter_events_send(
    *, environment_id: uuid.UUID | str, batch_size: int = SEND_BATCH, now: dt.datetime | None = None
) -> SendResult:
    """Send the environment's pending meter events (each once; see the module docstring).

    Batches of ``batch_size`` rows are locked ``FOR UPDATE SKIP LOCKED`` while they are
    sent and marked, so a concurrent run takes other rows. Stops at the first transient
    failure (Stripe unreachable, rate limited, 5xx) with ``retry_in`` set.
    """
    result = SendResult()
    if not is_stripe_driven(environment_id):
        return result
    client: stripe.StripeClient | None = None
    while result.retry_in is None:
        now_ = now or timezone.now()
        with transaction.atomic():
            rows = list(
                scoped(MeterEvent.objects.select_for_update(skip_locked=True), environment_id)
                .filter(status=MeterEvent.Status.PENDING, next_attempt_at__lte=now_)
                .order_by("next_attempt_at", "id")[:batch_size]
            )
            if not rows:
                break
            customers = dict(
                scoped(StripeCustomer, environment_id)
                .filter(customer_id__in={r.customer_id for r in rows})
                .values_list("customer_id", "stripe_customer_id")
            )
            meters = dict(
                scoped(StripeMeter, environment_id)
                .filter(feature_id__in={r.feature_id for r in rows})
                .values_list("feature_id", "event_name")
            )
            client = client or stripe_client(environment_id)
            for row in rows:
                if result.retry_in is not None:
                    break  # the rest stay pending, untouched
                _send_one(client, row, customers, meters, result, now_)
            MeterEvent.objects.bulk_update(
                rows, ["status", "attempts", "next_attempt_at", "last_error", "sent_at"]
            )
        if len(rows) < batch_size:
            break
    return result


def _send_one(  # noqa: PLR0917 - a private step of meter_events_send
    client: stripe.StripeClient,
    row: MeterEvent,
    customers: dict[uuid.UUID, str],
    meters: dict[uuid.UUID, str],
    result: SendResult,
    now: dt.datetime,
) -> None:
    stripe_customer = customers.get(row.customer_id)
    event_name = meters.get(row.feature_id)
    if stripe_customer is None or event_name is None:
        row.status = MeterEvent.Status.BLOCKED
        row.last_error = (
            "The customer has no Stripe customer yet."
            if stripe_customer is None
            else "The feature has no Stripe meter (no plan prices it in Stripe)."
        )
        result.blocked += 1
        return
    identifier = meter_event_identifier(row.environment_id, row.event_id)
    # The idempotency key changes with each attempt that reached an answer: a resend after a
    # crash (the attempt was not recorded) replays the same request; a retry after a refusal
    # or an outage is a new request, and the identifier still keeps Stripe from counting twice.
    try:
        client.v1.billing.meter_events.create(
            params={
                "event_name": event_name,
                "payload": {
                    CUSTOMER_PAYLOAD_KEY: stripe_customer,
                    VALUE_PAYLOAD_KEY: decimal_str(row.value),
                },
                "identifier": identifier,
                "timestamp": int(row.occurred_at.timestamp()),
            },
            options={"idempotency_key": f"{identifier}-a{row.attempts}"},
        )
    except stripe.InvalidRequestError as exc:
        if _is_duplicate(exc):
            row.status, row.sent_at, row.last_error = MeterEvent.Status.SENT, now, ""
            result.duplicates += 1
            return
        row.attempts += 1
        row.status, row.last_error = MeterEvent.Status.FAILED, _message(exc)
        result.failed += 1
        return
    except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
        row.attempts += 1
        row.last_error = _message(exc)
        if row.attempts >= MAX_ATTEMPTS:
            row.status = MeterEvent.Status.FAILED
            result.failed += 1
        else:
            row.next_attempt_at = now + backoff(row.attempts)
        result.retry_in = backoff(row.attempts)
        return
    except stripe.StripeError as exc:  # authentication, permission: the key needs fixing
        row.attempts += 1
        row.last_error = _message(exc)
        row.next_attempt_at = now + backoff(row.attempts)
        if row.attempts >= MAX_ATTEMPTS:
            row.status = MeterEvent.Status.FAILED
            result.failed += 1
        result.retry_in = backoff(row.attempts)
        return
    row.status, row.sent_at, row.last_error = MeterEvent.Status.SENT, now, ""
    row.attempts += 1
    result.sent += 1
