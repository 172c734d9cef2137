"""Evaluating rules: observe each subject, compare with each threshold, and hand the
crossings to the state machine (``transitions``), which decides them in SQL.

Hysteresis: a firing state resolves only once its value is back past the threshold by
the rule's ``recovery_margin``; between the two nothing changes. A subject that has no
events in the window any more is observed as zero (no value for margin %).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from decimal import Decimal

from django.utils import timezone

from apps.core.tenancy import scoped
from apps.events.usage import Measures

from . import transitions
from .evaluation import Observation, key_of, observe, observe_budgets, window_bounds
from .models import AlertRule, AlertState, Metric, Notification, Operator

logger = logging.getLogger(__name__)

ABOVE = {Operator.GT, Operator.GTE}


def crosses(operator: str, value: Decimal | None, threshold: Decimal) -> bool:
    if value is None:
        return False
    if operator == Operator.GT:
        return value > threshold
    if operator == Operator.GTE:
        return value >= threshold
    if operator == Operator.LT:
        return value < threshold
    return value <= threshold


def recovered(operator: str, value: Decimal | None, threshold: Decimal, margin: Decimal) -> bool:
    """Back past the threshold by ``margin`` (an undefined value counts as recovered)."""
    if value is None:
        return True
    shifted = threshold - margin if operator in ABOVE else threshold + margin
    return not crosses(operator, value, shifted)


def _absent(rule: AlertRule, subject: str, now: dt.datetime) -> Observation:
    start, end = window_bounds(rule.window, now)
    value = None if rule.metric == Metric.MARGIN_PERCENT else Decimal(0)
    return Observation(subject, key_of(subject), value, Measures(), start, end)


def decide(
    rule: AlertRule, observations: list[Observation], now: dt.datetime, *, partial: bool = False
) -> list[Notification]:
    """Apply the rule to ``observations``. ``partial``: they are a subset of the rule's
    subjects (an ingestion-time check of some keys), so absent subjects are left alone."""
    by_subject = {obs.subject: obs for obs in observations}
    states = scoped(AlertState, rule.environment_id).filter(
        rule=rule, status=AlertState.Status.FIRING
    )
    if partial:
        states = states.filter(subject__in=list(by_subject))
    firing = set(states.values_list("subject", "threshold"))
    for subject, _ in firing:
        if subject not in by_subject:
            by_subject[subject] = _absent(rule, subject, now)
    fire, clear = [], []
    for obs in by_subject.values():
        for threshold in rule.thresholds:
            limit = Decimal(threshold["value"])
            if crosses(rule.operator, obs.value, limit):
                fire.append((obs, threshold))
            elif (obs.subject, threshold["value"]) in firing and recovered(
                rule.operator, obs.value, limit, rule.recovery_margin
            ):
                clear.append((obs, threshold))
    return transitions.apply(rule, fire=fire, clear=clear, now=now)


def rule_evaluate(*, rule: AlertRule, now: dt.datetime | None = None) -> list[Notification]:
    now = now or timezone.now()
    return decide(rule, observe(rule, now), now)


def environment_evaluate(*, environment_id: uuid.UUID | str, now: dt.datetime | None = None) -> int:
    """Evaluate every enabled rule of the environment; returns the notifications made.
    A rule that fails is logged and skipped (the others still run)."""
    now = now or timezone.now()
    made = 0
    rules = scoped(AlertRule, environment_id).filter(enabled=True).select_related("environment")
    for rule in rules:
        try:
            made += len(rule_evaluate(rule=rule, now=now))
        except Exception:
            logger.exception("alerts: rule %s failed to evaluate", rule.pk)
    return made


def key_budgets_evaluate(
    *, environment_id: uuid.UUID | str, api_key_ids: list[uuid.UUID], now: dt.datetime | None = None
) -> int:
    """The budget rules of the environment, for these keys only (after ingestion)."""
    now = now or timezone.now()
    made = 0
    rules = (
        scoped(AlertRule, environment_id)
        .filter(enabled=True, metric=Metric.KEY_BUDGET_PERCENT)
        .select_related("environment")
    )
    for rule in rules:
        observations = observe_budgets(rule, now, api_key_ids)
        made += len(decide(rule, observations, now, partial=True))
    return made
