"""Plans made through the services, for the plans and subscriptions tests."""

from __future__ import annotations

from decimal import Decimal

from apps.accounts.audit import Actor
from apps.accounts.models import Environment
from apps.features.models import Feature
from apps.features.services import features_ensure
from apps.plans.models import Plan
from apps.plans.pricing import PricingModel, Rule
from apps.plans.services import RuleSpec, plan_activate, plan_create

SYSTEM = Actor.system()


def make_feature(environment: Environment, key: str = "tokens", unit_label: str = "") -> Feature:
    features_ensure(environment=environment, keys=[key])
    feature = Feature.objects.get(environment=environment, key=key)
    if unit_label:
        feature.unit_label = unit_label
        feature.save(update_fields=["unit_label"])
    return feature


def make_plan(
    environment: Environment,
    key: str = "pro",
    *,
    price: str | int = 49,
    interval_months: int = 1,
    billing_timing: str = Plan.BillingTiming.IN_ADVANCE,
    currency: str = "USD",
    features: dict[str, RuleSpec] | None = None,
    active: bool = True,
) -> Plan:
    """A plan with the given rules (default: ``tokens`` at 0.002 per unit)."""
    if features is None:
        features = {
            "tokens": RuleSpec(rule=Rule(model=PricingModel.PER_UNIT, unit_price=Decimal("0.002")))
        }
    plan = plan_create(
        environment=environment,
        key=key,
        name=key.title(),
        price_amount=Decimal(price),
        interval_months=interval_months,
        billing_timing=billing_timing,
        currency=currency,
        features=[(make_feature(environment, fkey), spec) for fkey, spec in features.items()],
        actor=SYSTEM,
    )
    if active:
        plan = plan_activate(plan=plan, actor=SYSTEM)
    return plan
