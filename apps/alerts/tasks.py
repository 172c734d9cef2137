"""Celery tasks of alerts: they take ids, call a service, and are safe to run twice or at
once (transitions are decided in SQL; the outbox is drained ``SKIP LOCKED``).

The beat runs :func:`evaluate_alerts` every minute: every environment's defaults are
ensured, every enabled rule is evaluated, and the due deliveries are sent.
"""

from __future__ import annotations

import logging
import uuid

from celery import shared_task

from apps.accounts.models import Environment

from .delivery import deliver_due, due_environments
from .evaluator import environment_evaluate, key_budgets_evaluate
from .models import AlertDefaults, AlertRule
from .services import defaults_ensure

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def evaluate_alerts() -> int:
    """The minute sweep: defaults, every environment with enabled rules, the outbox."""
    without_defaults = Environment.objects.exclude(
        pk__in=AlertDefaults.objects.values("environment_id")
    ).values_list("pk", flat=True)
    for env_id in without_defaults:
        defaults_ensure(environment=env_id)
    made = 0
    with_rules = (
        AlertRule.objects.filter(enabled=True).values_list("environment_id", flat=True).distinct()
    )
    for env_id in with_rules:
        made += environment_evaluate(environment_id=env_id)
    for env_id in due_environments():
        deliver_alerts.delay(str(env_id))
    return made


@shared_task(acks_late=True)
def evaluate_key_budgets(environment_id: str, api_key_id: str) -> int:
    """After ingestion: the budget rules for one key (debounced by the ingestion step)."""
    return key_budgets_evaluate(environment_id=environment_id, api_key_ids=[uuid.UUID(api_key_id)])


@shared_task(acks_late=True)
def deliver_alerts(environment_id: str) -> int:
    return deliver_due(environment_id=environment_id)
