"""Reads for plans; every function takes the environment first."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from django.db.models import Prefetch, QuerySet

from apps.core.errors import NotFound, ValidationFailed
from apps.core.tenancy import scoped

from .models import Plan, PlanFeatureRule
from .services import KEY_MAX_LENGTH

if TYPE_CHECKING:
    from apps.accounts.models import Environment

# ``?status=`` of the list: one status, or every plan.
STATUS_FILTERS = (*Plan.Status.values, "all")


def plans_for(environment: Environment) -> QuerySet[Plan]:
    return scoped(Plan, environment)


def with_rules(plans: QuerySet[Plan]) -> QuerySet[Plan]:
    """Plans with ``plan.rule_list`` (their rules and features) in one more query."""
    rules = PlanFeatureRule.objects.select_related("feature").order_by("feature__key")
    return plans.prefetch_related(Prefetch("rules", queryset=rules, to_attr="rule_list"))


def plan_get(environment: Environment, reference: str, *, rules: bool = False) -> Plan:
    """The environment's plan with this id or key, else 404.

    An id wins over a key that happens to spell the same UUID.
    """
    if not reference or len(reference) > KEY_MAX_LENGTH or "\x00" in reference:
        raise NotFound("No such plan.")
    queryset = with_rules(plans_for(environment)) if rules else plans_for(environment)
    try:
        plan_id = uuid.UUID(reference)
    except ValueError:
        plan_id = None
    if plan_id is not None and (plan := queryset.filter(pk=plan_id).first()) is not None:
        return plan
    plan = queryset.filter(key=reference).first()
    if plan is None:
        raise NotFound("No such plan.")
    return plan


def plans_list(environment: Environment, status: str | None = None) -> QuerySet[Plan]:
    """Plans with their rules; ``status`` defaults to ``active`` (what clients may subscribe to)."""
    status = (status or Plan.Status.ACTIVE).lower()
    if status not in STATUS_FILTERS:
        raise ValidationFailed(fields={"status": [f"One of {', '.join(STATUS_FILTERS)}."]})
    plans = plans_for(environment)
    if status != "all":
        plans = plans.filter(status=status)
    return with_rules(plans)


def plan_rules(plan: Plan) -> list[PlanFeatureRule]:
    """The plan's rules with their features, ordered by feature key."""
    cached = getattr(plan, "rule_list", None)
    if cached is not None:
        return cached
    return list(
        scoped(PlanFeatureRule, plan.environment_id)
        .filter(plan_id=plan.pk)
        .select_related("feature")
        .order_by("feature__key")
    )
