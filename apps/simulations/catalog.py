"""What a simulation prices with: the environment's plans, rules, features, credit
allocations and weights, loaded once, and per scenario an in-memory copy with the
scenario's changes applied. Nothing here writes: copies of model instances are never saved.

A scenario's changes, applied together:

* ``plan_base_price``: the plan's ``price_amount`` (a copy of the plan);
* ``pricing_rule``: the plan's rule for the feature, built by the plans app from the
  body the plans API takes (a new, unsaved rule row);
* ``move_plan``: periods on the first plan are priced with the second (after its own
  changes);
* ``credit_weight``, ``credit_price``, ``model_swap``, ``provider_price``, ``discount``:
  held here and applied by the engine (weights, credits value, costs, bills).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

from apps.core.errors import ValidationFailed
from apps.core.tenancy import scoped
from apps.credits.models import CreditModel, PlanCreditAllocation
from apps.credits.weights import EnvWeights, env_weights
from apps.features.models import Feature
from apps.plans.models import Plan, PlanFeatureRule
from apps.plans.services import _new_rule
from apps.pricing.catalog import RateOverride
from apps.pricing.costing import TokenUsage, quote_cost

from .request import Change, Scenario, SimulationInput


@dataclasses.dataclass(frozen=True)
class Allocation:
    denomination: str
    amount: Decimal  # credits granted each period
    hard_limit: bool


@dataclasses.dataclass
class Base:
    """The environment's catalog as stored (read once per run)."""

    environment_id: Any
    plans: dict[Any, Plan]
    rules_of: dict[Any, list[PlanFeatureRule]]
    features: dict[Any, Feature]
    allocations: dict[str, list[Allocation]]  # plan key -> its credit grants per period
    credit_models: dict[str, CreditModel]  # by name and by denomination
    weights: EnvWeights

    @property
    def plan_by_key(self) -> dict[str, Plan]:
        return {plan.key: plan for plan in self.plans.values()}

    @property
    def feature_by_key(self) -> dict[str, Feature]:
        return {feature.key: feature for feature in self.features.values()}


def load_base(environment_id: Any) -> Base:
    plans = {plan.pk: plan for plan in scoped(Plan, environment_id)}
    rules_of: dict[Any, list[PlanFeatureRule]] = defaultdict(list)
    for rule in scoped(PlanFeatureRule, environment_id).order_by("created_at", "id"):
        rules_of[rule.plan_id].append(rule)
    features = {feature.pk: feature for feature in scoped(Feature, environment_id)}
    models = list(scoped(CreditModel, environment_id))
    by_pk = {model.pk: model for model in models}
    allocations: dict[str, list[Allocation]] = defaultdict(list)
    for row in scoped(PlanCreditAllocation, environment_id):
        model = by_pk[row.credit_model_id]
        allocations[row.plan_key].append(
            Allocation(model.denomination, row.credit_amount, model.hard_limit)
        )
    credit_models = {m.name: m for m in models} | {m.denomination: m for m in models}
    weights, _complete = env_weights(environment_id)
    return Base(
        environment_id, plans, dict(rules_of), features, allocations, credit_models, weights
    )


@dataclasses.dataclass
class ScenarioCatalog:
    """One scenario's view: the plans and rules to price with, and the other changes."""

    name: str
    plans: dict[Any, Plan]
    rules_of: dict[Any, list[PlanFeatureRule]]
    moved: dict[Any, Any] = dataclasses.field(default_factory=dict)  # plan id -> plan id
    weights: dict[tuple[Any, str], Decimal] = dataclasses.field(default_factory=dict)
    credit_prices: dict[str, Decimal] = dataclasses.field(default_factory=dict)  # denomination
    swaps: list[Change] = dataclasses.field(default_factory=list)
    rates: dict[tuple[str, str], RateOverride] = dataclasses.field(default_factory=dict)
    discounts: list[tuple[Decimal, str | None]] = dataclasses.field(default_factory=list)
    feature_ids: dict[str, Any] = dataclasses.field(default_factory=dict)

    def plan(self, plan: Plan) -> Plan:
        """The plan a period on ``plan`` is priced with in this scenario."""
        return self.plans[self.moved.get(plan.pk, plan.pk)]

    def weight_override(self, feature_id: Any, model: str) -> Decimal | None:
        found = self.weights.get((feature_id, model))
        return found if found is not None else self.weights.get((feature_id, ""))

    @property
    def changes_credits(self) -> bool:
        return bool(self.weights)


def baseline(base: Base) -> ScenarioCatalog:
    return ScenarioCatalog("Actual", dict(base.plans), dict(base.rules_of))


def _fail(path: str, message: str) -> None:
    raise ValidationFailed(fields={path: [message]})


def _plan(base: Base, key: str, path: str) -> Plan:
    plan = base.plan_by_key.get(key)
    if plan is None:
        _fail(path, "No plan with this key.")
    assert plan is not None
    return plan


def _feature(base: Base, key: str, path: str) -> Feature:
    feature = base.feature_by_key.get(key)
    if feature is None:
        _fail(path, "No feature with this key.")
    assert feature is not None
    return feature


def _set_price(out: ScenarioCatalog, plan: Plan, amount: Decimal) -> None:
    changed = copy.copy(out.plans[plan.pk])
    changed.price_amount = amount
    out.plans[plan.pk] = changed


def _set_rule(out: ScenarioCatalog, plan: Plan, feature: Feature, change: Change) -> None:
    assert change.rule is not None
    rule = _new_rule(plan, feature, change.rule, dt.datetime.now(dt.UTC))
    rule.pk = None  # never saved
    rows = [row for row in out.rules_of.get(plan.pk, []) if row.feature_id != feature.pk]
    out.rules_of[plan.pk] = [*rows, rule]


def _check_model(base: Base, change: Change, path: str, now: dt.datetime) -> None:
    quote = quote_cost(
        environment_id=base.environment_id,
        model=change.get("toModel"),
        provider=change.get("toProvider"),
        usage=TokenUsage(input_tokens=1, output_tokens=1),
        at=now,
    )
    if quote.cost_usd is None:
        _fail(f"{path}.toModel", "The catalog has no price for this model (set one first).")


def _apply(base: Base, out: ScenarioCatalog, change: Change, path: str, now: dt.datetime) -> None:
    kind = change.type
    if kind == "plan_base_price":
        _set_price(out, _plan(base, change.get("planKey"), f"{path}.planKey"), change.get("amount"))
    elif kind == "pricing_rule":
        plan = _plan(base, change.get("planKey"), f"{path}.planKey")
        _set_rule(out, plan, _feature(base, change.get("featureKey"), f"{path}.featureKey"), change)
    elif kind == "move_plan":
        source = _plan(base, change.get("fromPlanKey"), f"{path}.fromPlanKey")
        out.moved[source.pk] = _plan(base, change.get("toPlanKey"), f"{path}.toPlanKey").pk
    elif kind == "credit_weight":
        feature = _feature(base, change.get("featureKey"), f"{path}.featureKey")
        out.weights[(feature.pk, change.get("model") or "")] = change.get("weight")
    elif kind == "credit_price":
        model = base.credit_models.get(change.get("creditModel"))
        if model is None:
            _fail(f"{path}.creditModel", "No credit model with this name or denomination.")
        assert model is not None
        out.credit_prices[model.denomination] = change.get("unitPrice")
    elif kind == "model_swap":
        feature = _feature(base, change.get("featureKey"), f"{path}.featureKey")
        out.feature_ids[feature.key] = feature.pk
        _check_model(base, change, path, now)
        out.swaps.append(change)
    elif kind == "provider_price":
        out.rates[(change.get("provider").lower(), change.get("model").lower())] = RateOverride(
            input_mtok=change.get("inputCostPerMillion"),
            output_mtok=change.get("outputCostPerMillion"),
            cache_read_mtok=_or(
                change.get("cacheReadCostPerMillion"), "inputCostPerMillion", change
            ),
            cache_write_mtok=_or(
                change.get("cacheWriteCostPerMillion"), "inputCostPerMillion", change
            ),
            per_request_usd=None,
        )
    elif kind == "discount":
        if change.get("planKey"):
            _plan(base, change.get("planKey"), f"{path}.planKey")
        out.discounts.append((change.get("percent"), change.get("planKey")))


def _or(value: Decimal | None, fallback: str, change: Change) -> Decimal:
    return value if value is not None else change.get(fallback)


def scenario_catalog(
    base: Base, scenario: Scenario, index: int, now: dt.datetime
) -> ScenarioCatalog:
    out = ScenarioCatalog(scenario.name, dict(base.plans), dict(base.rules_of))
    # Prices and rules first, so a move lands on the target plan as this scenario has it.
    for position, change in enumerate(scenario.changes):
        _apply(base, out, change, f"scenarios.{index}.changes.{position}", now)
    return out


def scenario_catalogs(
    base: Base, inputs: SimulationInput, now: dt.datetime
) -> list[ScenarioCatalog]:
    """Each scenario's catalog; a 400 naming the change when it refers to something unknown."""
    return [
        scenario_catalog(base, scenario, index, now)
        for index, scenario in enumerate(inputs.scenarios)
    ]
