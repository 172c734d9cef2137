"""Provisioning a Stripe-driven environment in Stripe (the localstripe peer): a plan becomes a
product, a base price, one meter per feature and a metered price per usage rule, each made
once however often (or concurrently) it runs; customers and subscriptions follow ours."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from apps.customers.models import Customer
from apps.stripe_meters.models import (
    StripeCustomer,
    StripeMeter,
    StripePlan,
    StripeRulePrice,
    StripeSubscription,
)
from apps.stripe_meters.services import (
    stripe_environment_provision,
    stripe_subscription_cancel,
    stripe_subscription_provision,
)
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_cancel
from tests.stripe_meters.conftest import SYSTEM, Driven, batch_event, rule

D = Decimal
pytestmark = pytest.mark.django_db

EVERY_MODEL = {
    "tokens": rule(
        "graduated", tiers=[("1000", "0.005", "1"), ("10000", "0.0025", "0"), (None, "0.001", "0")]
    ),
    "images": rule("volume", tiers=[("100", "0.04", "0"), (None, "0.02", "5")]),
    "calls": rule("per_unit", price="0.0004"),
    "pages": rule("package", price="2", package=100),
    "seats": rule("included"),
}


def _price_of(driven: Driven, feature: str) -> Any:
    row = StripeRulePrice.objects.get(environment=driven.env, feature__key=feature)
    return driven.stripe.v1.prices.retrieve(row.stripe_price_id, params={"expand": ["tiers"]})


def _tiers(price: Any) -> list[tuple[Any, Any, Any]]:
    return [(t.up_to, t.unit_amount_decimal, t.flat_amount) for t in price.tiers]


def test_a_plan_becomes_one_product_base_price_meters_and_metered_prices(driven: Driven) -> None:
    plan = driven.plan("pro", EVERY_MODEL, price="29")
    driven.provision_plan(plan)
    driven.provision_plan(plan)  # again: nothing new
    stripe_environment_provision(environment=driven.env)  # and the catch-up: nothing new

    stripe = driven.stripe
    products = stripe.v1.products.list().data
    assert [p.name for p in products] == ["Pro"]
    prices = stripe.v1.prices.list(params={"limit": 100}).data
    assert len(prices) == 5  # the base price and four usage rules (the included one bills nothing)
    meters = stripe.v1.billing.meters.list(params={"limit": 100}).data
    assert sorted(m.event_name for m in meters) == [
        "tanso_calls",
        "tanso_images",
        "tanso_pages",
        "tanso_tokens",
    ]
    assert {m.default_aggregation.formula for m in meters} == {"sum"}
    assert {m.customer_mapping.event_payload_key for m in meters} == {"stripe_customer_id"}
    assert StripeMeter.objects.filter(environment=driven.env).count() == 4

    link = StripePlan.objects.get(plan=plan)
    base = stripe.v1.prices.retrieve(link.stripe_base_price_id)
    assert (base.unit_amount, base.currency, base.product) == (2900, "usd", products[0].id)
    assert (base.recurring.usage_type, base.recurring.interval) == ("licensed", "month")

    graduated = _price_of(driven, "tokens")
    assert (graduated.billing_scheme, graduated.tiers_mode) == ("tiered", "graduated")
    assert graduated.recurring.usage_type == "metered"
    meter_of = {m.event_name: m.id for m in meters}
    assert graduated.recurring.meter == meter_of["tanso_tokens"]
    # 0.005 USD = 0.5 cent per unit up to 1000 (+ 1 USD once entered), then 0.25, then 0.1.
    assert _tiers(graduated) == [
        (1000, D("0.5"), 100),
        (10000, D("0.25"), None),
        (None, D("0.1"), None),
    ]
    volume = _price_of(driven, "images")
    assert volume.tiers_mode == "volume"
    assert _tiers(volume) == [(100, D("4"), None), (None, D("2"), 500)]
    per_unit = _price_of(driven, "calls")
    assert (per_unit.billing_scheme, per_unit.unit_amount, per_unit.unit_amount_decimal) == (
        "per_unit",
        None,
        D("0.04"),
    )
    package = _price_of(driven, "pages")
    assert package.unit_amount == 200
    assert (package.transform_quantity.divide_by, package.transform_quantity.round) == (100, "up")
    assert not StripeRulePrice.objects.filter(feature__key="seats").exists()


def test_rules_stripe_cannot_price_are_flagged_not_guessed(driven: Driven) -> None:
    plan = driven.plan(
        "odd",
        {
            "capped": rule("per_unit", price="0.01", cap="1000", overage="0.02"),
            "hard": rule(
                "graduated", tiers=[("500", "0.01", "0"), (None, "0.005", "0")], cap="800"
            ),
            "daily": rule("per_unit", price="0.01", cap="10", reset="day"),
            "halves": rule("graduated", tiers=[("0.5", "1", "0"), (None, "2", "0")]),
            "centfee": rule("volume", tiers=[("10", "1", "0.005"), (None, "1", "0")]),
        },
    )
    driven.provision_plan(plan)
    problems = dict(
        StripeRulePrice.objects.filter(plan=plan).values_list("feature__key", "problem")
    )
    assert problems["capped"] == "" and problems["hard"] == ""
    assert "own interval" in problems["daily"]
    assert "whole units" in problems["halves"]
    assert "whole minor units" in problems["centfee"]
    # A period cap is a tier boundary: the overage price beyond it, or nothing under a hard cap.
    assert _tiers(_price_of(driven, "capped")) == [(1000, D("1"), None), (None, D("2"), None)]
    assert _tiers(_price_of(driven, "hard")) == [
        (500, D("1"), None),
        (800, D("0.5"), None),
        (None, D("0"), None),
    ]


def test_a_subscription_becomes_a_customer_and_a_subscription_once(driven: Driven) -> None:
    plan = driven.plan("pro", {"tokens": EVERY_MODEL["tokens"], "calls": EVERY_MODEL["calls"]})
    subscription = driven.subscribe(plan)
    first = driven.provision(subscription)
    again = driven.provision(subscription)
    stripe_environment_provision(environment=driven.env)
    assert first == again

    stripe = driven.stripe
    customers = stripe.v1.customers.list().data
    assert len(customers) == 1
    assert customers[0].metadata["tanso_reference_id"] == "cus_1"
    assert Customer.objects.get(pk=subscription.customer_id).stripe_customer_id == customers[0].id
    subscriptions = stripe.v1.subscriptions.list(params={"status": "all"}).data
    assert [s.id for s in subscriptions] == [first.stripe_subscription_id]
    made = subscriptions[0]
    assert made.customer == customers[0].id
    assert made.metadata["tanso_subscription_id"] == str(subscription.pk)
    expected = [StripePlan.objects.get(plan=plan).stripe_base_price_id] + [
        StripeRulePrice.objects.get(plan=plan, feature__key=key).stripe_price_id
        for key in ("calls", "tokens")
    ]
    assert [item["price"]["id"] for item in made["items"]["data"]] == expected
    # Stripe's periods start where ours do.
    assert made.start_date == int(subscription.current_period_start.timestamp())


def test_a_customer_naming_its_stripe_customer_is_not_made_again(driven: Driven) -> None:
    existing = driven.stripe.v1.customers.create(params={"name": "Known"})
    driven.customer("cus_9", stripe_customer_id=existing.id)
    plan = driven.plan()
    driven.provision(driven.subscribe(plan, "cus_9"))
    assert [c.id for c in driven.stripe.v1.customers.list().data] == [existing.id]
    link = StripeCustomer.objects.get(customer__reference_id="cus_9")
    assert (link.stripe_customer_id, link.created_in_stripe) == (existing.id, False)


def test_a_trial_reaches_stripe_as_its_trial_end(driven: Driven) -> None:
    subscription = driven.subscribe(driven.plan(price="10"), trial_days=14)
    link = driven.provision(subscription)
    made = driven.stripe.v1.subscriptions.retrieve(link.stripe_subscription_id)
    assert made.trial_end == int(subscription.trial_ends_at.timestamp())
    assert driven.stripe.v1.invoices.list().data == []  # nothing to pay during the trial


def test_a_cancelled_subscription_is_cancelled_in_stripe_once(driven: Driven) -> None:
    subscription = driven.subscribe(driven.plan())
    link = driven.provision(subscription)
    with driven.capture(execute=False):
        subscription_cancel(subscription=subscription, mode="immediate", actor=SYSTEM)
    subscription.refresh_from_db()
    stripe_subscription_cancel(subscription=subscription)
    stripe_subscription_cancel(subscription=subscription)
    stripe_environment_provision(environment=driven.env)
    made = driven.stripe.v1.subscriptions.retrieve(link.stripe_subscription_id)
    assert made.status == "canceled"
    link.refresh_from_db()
    assert link.cancelled_at is not None
    # A subscription cancelled before it reached Stripe never goes there.
    other = driven.subscribe(driven.plan("team"), "cus_2")
    with driven.capture(execute=False):
        subscription_cancel(subscription=other, mode="immediate", actor=SYSTEM)
    assert stripe_subscription_provision(subscription=Subscription.objects.get(pk=other.pk)) is None
    assert not StripeSubscription.objects.filter(subscription=other).exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_provisioning_makes_one_of_everything(driven: Driven) -> None:
    subscription = driven.subscribe(driven.plan("pro", EVERY_MODEL))
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def provision() -> None:
        try:
            start.wait()
            fresh = Subscription.objects.select_related("customer", "plan").get(pk=subscription.pk)
            stripe_subscription_provision(subscription=fresh)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=provision) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    stripe = driven.stripe
    assert len(stripe.v1.customers.list().data) == 1
    assert len(stripe.v1.products.list().data) == 1
    assert len(stripe.v1.prices.list(params={"limit": 100}).data) == 5
    assert len(stripe.v1.billing.meters.list(params={"limit": 100}).data) == 4
    assert len(stripe.v1.subscriptions.list(params={"status": "all"}).data) == 1
    assert StripeSubscription.objects.count() == 1


def test_graduated_usage_is_billed_by_stripe_on_the_period_total(driven: Driven) -> None:
    """What arrives in Stripe adds up: 1,500 tokens in three events on the graduated price
    cost 1000 x 0.5 + 100 (flat) + 500 x 0.25 = 725 cents on Stripe's invoice."""
    plan = driven.plan("pro", {"tokens": EVERY_MODEL["tokens"]}, price="0")
    subscription = driven.subscribe(plan)
    link = driven.provision(subscription)
    driven.batch([batch_event(units=u) for u in (400, 600, 500)])
    assert driven.send().sent == 3
    customer = StripeCustomer.objects.get(customer_id=subscription.customer_id)
    invoice = driven.stripe.v1.invoices.create(
        params={
            "customer": customer.stripe_customer_id,
            "subscription": link.stripe_subscription_id,
        }
    )
    usage = [line for line in invoice.lines.data if line.amount and line.quantity == 1500]
    assert [line.amount for line in usage] == [725]
