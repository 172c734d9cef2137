"""JSON shape of plans and their rules, and the readable pricing text shown to clients.

The client list follows the reference API's ``GET /plans`` entry (plan fields,
``features[{id, key, name, description, pricingType, pricing}]``,
``creditAllocations``), flattened: a plan is one object (PRODUCT.md §3.8).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from apps.core.money_format import format_number, format_price

from .models import Plan, PlanFeatureRule
from .pricing import PricingModel, Rule, Tier
from .selectors import plan_rules

PRICING_TYPE = {
    PricingModel.INCLUDED: "included",
    PricingModel.PER_UNIT: "usage_based",
    PricingModel.GRADUATED: "graduated",
    PricingModel.VOLUME: "volume",
    PricingModel.PACKAGE: "package",
}
WINDOW_TEXT: dict[str, str] = {
    PlanFeatureRule.ResetInterval.BILLING_PERIOD: "per billing period",
    PlanFeatureRule.ResetInterval.DAY: "per day",
    PlanFeatureRule.ResetInterval.WEEK: "per week",
    PlanFeatureRule.ResetInterval.MONTH: "per calendar month",
    PlanFeatureRule.ResetInterval.NEVER: "in total",
}


# -- readable text ------------------------------------------------------------------------


def _singular(label: str) -> str:
    if label.endswith("ies") and len(label) > 3:
        return label[:-3] + "y"
    if label.endswith("s") and not label.endswith("ss"):
        return label[:-1]
    return label


def _plural(label: str) -> str:
    if label.endswith("s"):
        return label
    if label.endswith("y") and label[-2:-1] not in "aeiou":
        return label[:-1] + "ies"
    return label + "s"


def _units(amount: Decimal | int, label: str) -> str:
    return f"{format_number(amount)} {_singular(label) if amount == 1 else _plural(label)}"


def _per_unit(price: Decimal, label: str, currency: str) -> str:
    return f"{format_price(price, currency)} per {_singular(label)}"


def _tier_price(tier: Tier, label: str, currency: str, *, lead: str = "at ") -> str:
    if tier.unit_price == 0 and tier.flat_fee == 0:
        return "free"
    parts = []
    if tier.unit_price or not tier.flat_fee:
        parts.append(lead + _per_unit(tier.unit_price, label, currency))
    if tier.flat_fee:
        parts.append(f"{format_price(tier.flat_fee, currency)} flat")
    return " + ".join(parts)


def _graduated_text(tiers: tuple[Tier, ...], label: str, currency: str) -> str:
    if len(tiers) == 1:
        return _tier_price(tiers[0], label, currency, lead="")
    parts = []
    lower = Decimal(0)
    for index, tier in enumerate(tiers):
        if tier.up_to is None:
            price = _tier_price(tier, label, currency, lead="")
            parts.append(f"then {price}" if price != "free" else "then free")
            break
        span = tier.up_to - lower
        head = f"first {_units(span, label)}" if index == 0 else f"next {format_number(span)}"
        parts.append(f"{head} {_tier_price(tier, label, currency)}")
        lower = tier.up_to
    return ", ".join(parts)


def _volume_text(tiers: tuple[Tier, ...], label: str, currency: str) -> str:
    parts = []
    lower = Decimal(0)
    for tier in tiers:
        price = _tier_price(tier, label, currency, lead="")
        if tier.up_to is None:
            head = f"above {format_number(lower)}" if lower else "any amount"
        else:
            head = (
                f"up to {_units(tier.up_to, label)}"
                if not lower
                else f"up to {format_number(tier.up_to)}"
            )
            lower = tier.up_to
        parts.append(f"{head}: {price}")
    return "all units at the price of the tier reached: " + "; ".join(parts)


def describe_rule(rule: Rule, *, unit_label: str, currency: str, reset_interval: str) -> str:
    """A sentence for people, e.g. ``"$0.002 per token"`` or
    ``"First 1,000 tokens per billing period included, then $0.02 per token"``."""
    label = unit_label.strip() or "unit"
    model = PricingModel(rule.model)
    if model == PricingModel.INCLUDED:
        core = "included"
    elif model == PricingModel.PER_UNIT:
        core = _per_unit(rule.unit_price or Decimal(0), label, currency)
    elif model == PricingModel.PACKAGE:
        size = rule.package_size or 1
        block = _singular(label) if size == 1 else _units(size, label)
        core = f"{format_price(rule.unit_price or Decimal(0), currency)} per {block}"
    elif model == PricingModel.GRADUATED:
        core = _graduated_text(rule.tiers, label, currency)
    else:
        core = _volume_text(rule.tiers, label, currency)

    text = core
    if rule.max_usage is not None:
        window = WINDOW_TEXT.get(reset_interval, "per billing period")
        cap = f"{_units(rule.max_usage, label)} {window}"
        if rule.overage_unit_price is None:
            text = f"{core}, up to {cap}"
        elif model == PricingModel.INCLUDED:
            text = (
                f"first {cap} included, then {_per_unit(rule.overage_unit_price, label, currency)}"
            )
        else:
            overage = _per_unit(rule.overage_unit_price, label, currency)
            text = f"{core} for the first {cap}, then {overage}"
    return text[:1].upper() + text[1:]


def describe_plan_price(plan: Plan) -> str:
    period = "month" if plan.interval_months == Plan.Interval.MONTHLY else "year"
    return f"{format_price(plan.price_amount, plan.currency)} per {period}"


# -- JSON ---------------------------------------------------------------------------------


def _upper(value: str) -> str:
    return value.upper()


def render_pricing(rule_row: PlanFeatureRule) -> dict[str, Any]:
    rule = rule_row.pricing_rule()
    return {
        "model": rule_row.model,
        "pricePerUnit": rule.unit_price,
        "packageSize": rule.package_size,
        "tiers": [
            {"upTo": tier.up_to, "pricePerUnit": tier.unit_price, "flatFee": tier.flat_fee}
            for tier in rule.tiers
        ],
        "unitLabel": rule_row.feature.unit_label,
        "maxUsage": rule.max_usage,
        "resetInterval": rule_row.reset_interval,
        # The reference's two modes: counted per window, or since the subscription began.
        "resetMode": (
            "accumulate"
            if rule_row.reset_interval == PlanFeatureRule.ResetInterval.NEVER
            else "reset"
        ),
        "overagePricePerUnit": rule.overage_unit_price,
        "creditDenomination": rule_row.credit_denomination or None,
        "creditsPerUnit": rule_row.credits_per_unit,
    }


def render_rule(rule_row: PlanFeatureRule, currency: str) -> dict[str, Any]:
    """A feature as a plan prices it (the reference's ``features[]`` entry, plus more)."""
    feature = rule_row.feature
    return {
        "id": feature.pk,
        "key": feature.key,
        "featureKey": feature.key,
        "name": feature.name,
        "description": feature.description,
        "isEnabled": rule_row.is_enabled,
        "pricingType": PRICING_TYPE[PricingModel(rule_row.model)],
        "pricing": render_pricing(rule_row),
        "summary": describe_rule(
            rule_row.pricing_rule(),
            unit_label=feature.unit_label,
            currency=currency,
            reset_interval=rule_row.reset_interval,
        ),
        "ruleId": rule_row.pk,
        "modifiedAt": rule_row.updated_at,
    }


def render_plan(plan: Plan) -> dict[str, Any]:
    return {
        "id": plan.pk,
        "key": plan.key,
        "name": plan.name,
        "description": plan.description,
        "priceAmount": plan.price_amount,
        "currency": plan.currency,
        "interval": plan.Interval(plan.interval_months).name.lower(),
        "intervalMonths": plan.interval_months,
        "billingTiming": _upper(plan.billing_timing),
        "status": _upper(plan.status),
        "metadata": plan.metadata,
        "summary": describe_plan_price(plan),
        "features": [render_rule(rule, plan.currency) for rule in plan_rules(plan)],
        # Filled by the credits app (plan credit allocations) when it exists.
        "creditAllocations": [],
        "activatedAt": plan.activated_at,
        "archivedAt": plan.archived_at,
        "createdAt": plan.created_at,
        "modifiedAt": plan.updated_at,
    }
