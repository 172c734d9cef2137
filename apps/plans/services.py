"""Writes for plans: create, update, activate, archive, delete; link and unlink features.

Invariants kept here (and by the database where it can):

* ``(environment, key)`` is unique (``plan_env_key_unique``);
* a plan's commercial terms (key, base price, currency, interval, billing
  timing, and its feature rules) change only while it is a draft; name,
  description and metadata stay editable;
* a plan becomes active only with at least one feature rule;
* every write locks the plan row first, so an activation cannot interleave
  with a rule being added or changed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.audit import audit_change, changes_of
from apps.accounts.models import AuditEntry
from apps.core.errors import Conflict, NotFound, ValidationFailed
from apps.core.money import is_currency
from apps.core.tenancy import scoped

from . import errors, pricing
from .models import Plan, PlanFeatureRule, tiers_to_json

if TYPE_CHECKING:
    import datetime as dt

    from apps.accounts.audit import Actor
    from apps.accounts.models import Environment
    from apps.features.models import Feature

KEY_MAX_LENGTH = 128
NAME_MAX_LENGTH = 150
DENOMINATION_MAX_LENGTH = 32
MAX_RULES_PER_PLAN = 200
UNIQUE_CONSTRAINT = "plan_env_key_unique"
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
# Model field -> API name, for error envelopes.
API_NAMES = {
    "key": "key",
    "name": "name",
    "description": "description",
    "price_amount": "priceAmount",
    "currency": "currency",
    "interval_months": "intervalMonths",
    "billing_timing": "billingTiming",
    "metadata": "metadata",
}
# The commercial terms: frozen once the plan is active.
TERMS = frozenset({"key", "price_amount", "currency", "interval_months", "billing_timing"})
UPDATABLE_FIELDS = TERMS | {"name", "description", "metadata"}


@dataclasses.dataclass(frozen=True)
class RuleSpec:
    """Everything a plan x feature rule holds, apart from the plan and the feature."""

    rule: pricing.Rule = dataclasses.field(
        default_factory=lambda: pricing.Rule(model=pricing.PricingModel.INCLUDED)
    )
    reset_interval: str = PlanFeatureRule.ResetInterval.BILLING_PERIOD
    is_enabled: bool = True
    credit_denomination: str = ""
    credits_per_unit: Decimal | None = None


# -- validation ---------------------------------------------------------------------------


def spec_errors(spec: RuleSpec) -> dict[str, list[str]]:
    """Problems with a rule spec, keyed by API field name (empty when valid)."""
    problems = pricing.rule_errors(spec.rule)
    if spec.reset_interval not in PlanFeatureRule.ResetInterval.values:
        problems.setdefault("resetInterval", []).append(
            f"One of {', '.join(PlanFeatureRule.ResetInterval.values)}."
        )
    denomination = spec.credit_denomination
    if denomination:
        if len(denomination) > DENOMINATION_MAX_LENGTH or "\x00" in denomination:
            problems.setdefault("creditDenomination", []).append(
                f"At most {DENOMINATION_MAX_LENGTH} characters."
            )
        if spec.credits_per_unit is None:
            problems.setdefault("creditsPerUnit", []).append("Required with a creditDenomination.")
    elif spec.credits_per_unit is not None:
        problems.setdefault("creditDenomination", []).append("Required with creditsPerUnit.")
    if spec.credits_per_unit is not None and (
        problem := pricing.amount_problem(spec.credits_per_unit, positive=True)
    ):
        problems.setdefault("creditsPerUnit", []).append(problem)
    return problems


def _raise_if(problems: dict[str, list[str]], prefix: str = "") -> None:
    if problems:
        raise ValidationFailed(
            fields={f"{prefix}{name}": messages for name, messages in problems.items()}
        )


def _plan_field_errors(values: dict[str, Any]) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        problems.setdefault(API_NAMES[field], []).append(message)

    if "key" in values:
        key = values["key"]
        if not isinstance(key, str) or not key.strip():
            add("key", "May not be blank.")
        elif len(key) > KEY_MAX_LENGTH or "\x00" in key:
            add("key", f"At most {KEY_MAX_LENGTH} characters, no NUL.")
    if "name" in values:
        name = values["name"]
        if not isinstance(name, str) or not name.strip():
            add("name", "May not be blank.")
        elif len(name) > NAME_MAX_LENGTH or "\x00" in name:
            add("name", f"At most {NAME_MAX_LENGTH} characters, no NUL.")
    if "description" in values and (
        not isinstance(values["description"], str) or "\x00" in values["description"]
    ):
        add("description", "Must be text without NUL characters.")
    if "price_amount" in values:
        price = values["price_amount"]
        if not isinstance(price, Decimal):
            add("price_amount", "Must be a decimal amount.")
        elif problem := pricing.amount_problem(price):
            add("price_amount", problem)
    if "currency" in values and not (
        CURRENCY_RE.match(str(values["currency"])) and is_currency(str(values["currency"]))
    ):
        add("currency", "A three-letter ISO 4217 currency code, e.g. USD.")
    if "interval_months" in values and values["interval_months"] not in Plan.Interval.values:
        add("interval_months", "1 (monthly) or 12 (annual).")
    if "billing_timing" in values and values["billing_timing"] not in Plan.BillingTiming.values:
        add("billing_timing", f"One of {', '.join(Plan.BillingTiming.values)}.")
    if "metadata" in values and not isinstance(values["metadata"], dict):
        add("metadata", "Must be an object.")
    return problems


# -- plans --------------------------------------------------------------------------------


def _locked(plan: Plan) -> Plan:
    return scoped(Plan.objects.select_for_update(), plan.environment_id).get(pk=plan.pk)


@transaction.atomic
def plan_create(
    *,
    environment: Environment,
    key: str,
    name: str,
    description: str = "",
    price_amount: Decimal = Decimal(0),
    currency: str = "USD",
    interval_months: int = Plan.Interval.MONTHLY,
    billing_timing: str = Plan.BillingTiming.IN_ADVANCE,
    metadata: dict[str, Any] | None = None,
    features: Sequence[tuple[Feature, RuleSpec]] = (),
    actor: Actor,
) -> Plan:
    """Create a draft plan, optionally with its feature rules; a taken key is 409 ``plan_exists``.

    ``features`` pairs features of the same environment with their rule.
    Every plan write is audited with ``actor`` (before -> after where it changes).
    """
    currency = currency.upper() if isinstance(currency, str) else currency
    values = {
        "key": key,
        "name": name,
        "description": description,
        "price_amount": price_amount,
        "currency": currency,
        "interval_months": interval_months,
        "billing_timing": billing_timing,
        "metadata": {} if metadata is None else metadata,
    }
    problems = _plan_field_errors(values)
    seen: set[Any] = set()
    for index, (feature, spec) in enumerate(features):
        for field, messages in spec_errors(spec).items():
            problems[f"features.{index}.{field}"] = messages
        if feature.environment_id != environment.pk:
            problems[f"features.{index}.featureKey"] = ["No such feature."]
        elif feature.pk in seen:
            problems[f"features.{index}.featureKey"] = ["This feature is listed twice."]
        seen.add(feature.pk)
    if len(features) > MAX_RULES_PER_PLAN:
        problems["features"] = [f"At most {MAX_RULES_PER_PLAN} features per plan."]
    _raise_if(problems)

    now = timezone.now()
    plan = Plan(environment=environment, created_at=now, updated_at=now, **values)
    try:
        with transaction.atomic():
            plan.save(force_insert=True)
    except IntegrityError as exc:
        diag = getattr(exc.__cause__, "diag", None)
        if getattr(diag, "constraint_name", None) != UNIQUE_CONSTRAINT:
            raise
        raise Conflict(
            f"A plan with key '{key}' already exists.",
            code=errors.PLAN_EXISTS,
            fields={"key": ["Already exists."]},
        ) from None
    PlanFeatureRule.objects.bulk_create(
        [_new_rule(plan, feature, spec, now) for feature, spec in features]
    )
    _audit(
        plan,
        AuditEntry.Action.PLAN_CREATED,
        actor,
        {
            **{API_NAMES[name]: value for name, value in values.items() if name != "metadata"},
            "features": ", ".join(feature.key for feature, _ in features),
        },
    )
    return plan


def _audit(plan: Plan, action: str, actor: Actor, detail: dict[str, Any]) -> None:
    audit_change(
        environment_id=plan.environment_id,
        action=action,
        target_type="plan",
        target_id=plan.pk,
        actor=actor,
        detail={"key": plan.key, **detail},
    )


@transaction.atomic
def plan_update(*, plan: Plan, actor: Actor, **fields: Any) -> Plan:
    """Change some of :data:`UPDATABLE_FIELDS`.

    On an active or archived plan a change to a commercial term (see
    :data:`TERMS`) is 409 ``plan_terms_frozen``; sending a term with its current
    value is accepted, so a client may send the whole plan back.
    """
    unknown = set(fields) - UPDATABLE_FIELDS
    if unknown:
        raise TypeError(f"plan_update() cannot change {', '.join(sorted(unknown))}")
    if isinstance(fields.get("currency"), str):
        fields["currency"] = fields["currency"].upper()
    if fields.get("metadata", {}) is None:
        fields["metadata"] = {}
    _raise_if(_plan_field_errors(fields))
    plan = _locked(plan)
    changed = {name: value for name, value in fields.items() if getattr(plan, name) != value}
    frozen = sorted(name for name in changed if name in TERMS)
    if frozen and plan.terms_frozen:
        raise Conflict(
            f"The plan is {plan.status}: its commercial terms cannot change. "
            "Create a new plan (and move subscriptions to it) instead.",
            code=errors.PLAN_TERMS_FROZEN,
            fields={API_NAMES[name]: ["Frozen while the plan is not a draft."] for name in frozen},
        )
    if not changed:
        return plan
    before = {API_NAMES[name]: getattr(plan, name) for name in changed}
    for name, value in changed.items():
        setattr(plan, name, value)
    plan.updated_at = timezone.now()
    try:
        with transaction.atomic():
            plan.save(update_fields=[*changed, "updated_at"])
    except IntegrityError as exc:
        diag = getattr(exc.__cause__, "diag", None)
        if getattr(diag, "constraint_name", None) != UNIQUE_CONSTRAINT:
            raise
        raise Conflict(
            f"A plan with key '{plan.key}' already exists.",
            code=errors.PLAN_EXISTS,
            fields={"key": ["Already exists."]},
        ) from None
    after = {API_NAMES[name]: value for name, value in changed.items()}
    _audit(plan, AuditEntry.Action.PLAN_UPDATED, actor, {"changes": changes_of(before, after)})
    return plan


@transaction.atomic
def plan_activate(*, plan: Plan, actor: Actor, now: dt.datetime | None = None) -> Plan:
    """Draft -> active (idempotent for an active plan). Needs at least one feature rule."""
    plan = _locked(plan)
    if plan.status == Plan.Status.ACTIVE:
        return plan
    if plan.status == Plan.Status.ARCHIVED:
        raise Conflict("An archived plan cannot be activated again.", code=errors.PLAN_ARCHIVED)
    if not PlanFeatureRule.objects.filter(plan_id=plan.pk).exists():
        raise Conflict(
            "Link at least one feature to the plan before activating it.",
            code=errors.PLAN_HAS_NO_FEATURES,
        )
    now = now or timezone.now()
    before = plan.status
    plan.status = Plan.Status.ACTIVE
    plan.activated_at = now
    plan.updated_at = now
    plan.save(update_fields=["status", "activated_at", "updated_at"])
    _audit(plan, AuditEntry.Action.PLAN_ACTIVATED, actor, {"status": [before, plan.status]})
    return plan


@transaction.atomic
def plan_archive(*, plan: Plan, actor: Actor, now: dt.datetime | None = None) -> Plan:
    """Draft or active -> archived (idempotent). No new subscriptions; existing ones go on."""
    plan = _locked(plan)
    if plan.status == Plan.Status.ARCHIVED:
        return plan
    now = now or timezone.now()
    before = plan.status
    plan.status = Plan.Status.ARCHIVED
    plan.archived_at = now
    plan.updated_at = now
    plan.save(update_fields=["status", "archived_at", "updated_at"])
    _audit(plan, AuditEntry.Action.PLAN_ARCHIVED, actor, {"status": [before, plan.status]})
    return plan


@transaction.atomic
def plan_delete(*, plan: Plan, actor: Actor) -> None:
    """Delete a draft plan and its rules; other plans are archived instead (409)."""
    plan = _locked(plan)
    if plan.status != Plan.Status.DRAFT:
        raise Conflict(
            "Only a draft plan can be deleted; archive an active plan instead.",
            code=errors.PLAN_NOT_DRAFT,
        )
    _audit(plan, AuditEntry.Action.PLAN_DELETED, actor, {"name": plan.name})
    plan.delete()


# -- rules --------------------------------------------------------------------------------


def _ensure_editable(plan: Plan) -> None:
    if plan.terms_frozen:
        raise Conflict(
            f"The plan is {plan.status}: its pricing rules cannot change. "
            "Create a new plan instead.",
            code=errors.PLAN_TERMS_FROZEN,
        )


def _rule_columns(spec: RuleSpec) -> dict[str, Any]:
    rule = spec.rule
    return {
        "is_enabled": spec.is_enabled,
        "model": pricing.PricingModel(rule.model).value,
        "unit_price": rule.unit_price,
        "package_size": rule.package_size,
        "tiers": tiers_to_json(rule.tiers),
        "max_usage": rule.max_usage,
        "reset_interval": spec.reset_interval,
        "overage_unit_price": rule.overage_unit_price,
        "credit_denomination": spec.credit_denomination,
        "credits_per_unit": spec.credits_per_unit,
    }


def _new_rule(plan: Plan, feature: Feature, spec: RuleSpec, now: dt.datetime) -> PlanFeatureRule:
    return PlanFeatureRule(
        environment_id=plan.environment_id,
        plan=plan,
        feature=feature,
        created_at=now,
        updated_at=now,
        **_rule_columns(spec),
    )


@transaction.atomic
def plan_feature_set(
    *, plan: Plan, feature: Feature, spec: RuleSpec, actor: Actor
) -> PlanFeatureRule:
    """Link ``feature`` to a draft plan with this rule, or replace its rule."""
    _raise_if(spec_errors(spec))
    if feature.environment_id != plan.environment_id:
        raise NotFound("No such feature.")
    plan = _locked(plan)
    _ensure_editable(plan)
    now = timezone.now()
    existing = PlanFeatureRule.objects.filter(plan_id=plan.pk, feature_id=feature.pk).first()
    if existing is None:
        if PlanFeatureRule.objects.filter(plan_id=plan.pk).count() >= MAX_RULES_PER_PLAN:
            raise ValidationFailed(
                fields={"featureKey": [f"At most {MAX_RULES_PER_PLAN} features per plan."]}
            )
        rule = _new_rule(plan, feature, spec, now)
        rule.save(force_insert=True)
        _audit(
            plan,
            AuditEntry.Action.PLAN_FEATURE_LINKED,
            actor,
            {"feature": feature.key, "rule": _rule_columns(spec)},
        )
        return rule
    columns = _rule_columns(spec)
    before = {name: getattr(existing, name) for name in columns}
    for name, value in columns.items():
        setattr(existing, name, value)
    existing.updated_at = now
    existing.save()
    _audit(
        plan,
        AuditEntry.Action.PLAN_RULE_CHANGED,
        actor,
        {"feature": feature.key, "changes": changes_of(before, columns)},
    )
    return existing


@transaction.atomic
def plan_feature_remove(*, plan: Plan, feature: Feature, actor: Actor) -> None:
    """Unlink ``feature`` from a draft plan (404 ``feature_not_on_plan`` when not linked)."""
    plan = _locked(plan)
    _ensure_editable(plan)
    deleted, _ = PlanFeatureRule.objects.filter(plan_id=plan.pk, feature_id=feature.pk).delete()
    if not deleted:
        raise NotFound("This feature is not on the plan.", code=errors.FEATURE_NOT_ON_PLAN)
    _audit(plan, AuditEntry.Action.PLAN_FEATURE_UNLINKED, actor, {"feature": feature.key})
