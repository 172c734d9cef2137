"""Plan services called directly: what the API relies on, and what other apps will call."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from apps.core.errors import Conflict, NotFound, ValidationFailed
from apps.plans.models import Plan
from apps.plans.pricing import PricingModel, Rule, Tier, charge
from apps.plans.services import RuleSpec, plan_feature_set, plan_update
from tests.plans.helpers import SYSTEM, make_feature, make_plan

pytestmark = pytest.mark.django_db


def test_stored_rule_prices_exactly_as_given(tenant):
    tiers = (Tier(D("1000.5"), D("0.000000000001")), Tier(None, D("0.333333333333"), D("0.1")))
    spec = RuleSpec(rule=Rule(model=PricingModel.GRADUATED, tiers=tiers, max_usage=D(5000)))
    plan = make_plan(tenant.test, features={"tokens": spec}, active=False)
    stored = plan.rules.get().pricing_rule()
    assert stored == spec.rule
    assert charge(stored, D(2000)) == D("1000.5") * D("0.000000000001") + D("999.5") * D(
        "0.333333333333"
    ) + D("0.1")


def test_update_refuses_unknown_fields_and_frozen_terms(tenant):
    plan = make_plan(tenant.test)
    with pytest.raises(TypeError):
        plan_update(plan=plan, actor=SYSTEM, status="draft")
    with pytest.raises(Conflict) as caught:
        plan_update(plan=plan, actor=SYSTEM, interval_months=12)
    assert caught.value.code == "plan_terms_frozen"
    assert Plan.objects.get(pk=plan.pk).interval_months == 1


def test_update_validates_for_every_caller(tenant):
    plan = make_plan(tenant.test, active=False)
    with pytest.raises(ValidationFailed) as caught:
        plan_update(plan=plan, actor=SYSTEM, currency="usd1", price_amount=D(-1))
    assert set(caught.value.fields) == {"currency", "priceAmount"}


def test_rules_of_a_draft_are_validated_and_stay_in_the_environment(tenant):
    plan = make_plan(tenant.test, active=False)
    with pytest.raises(ValidationFailed) as caught:
        plan_feature_set(
            plan=plan,
            feature=make_feature(tenant.test, "seats"),
            spec=RuleSpec(rule=Rule(model=PricingModel.PACKAGE, unit_price=D(1))),
            actor=SYSTEM,
        )
    assert "packageSize" in caught.value.fields
    with pytest.raises(NotFound):
        plan_feature_set(
            plan=plan, feature=make_feature(tenant.live, "seats"), spec=RuleSpec(), actor=SYSTEM
        )
    assert plan.rules.count() == 1
