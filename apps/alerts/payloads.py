"""The message every channel delivers: ``alert.triggered`` / ``alert.resolved`` with the
rule, the subject by its public names, the threshold and observed value, the window, the
baseline of a spike and the money at stake, as decimal strings; empty fields are left out.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal, localcontext
from typing import Any

from django.conf import settings

from apps.analytics.selectors.margins import target_margin
from apps.apikeys.models import ApiKey
from apps.core.money import decimal_str
from apps.core.tenancy import scoped
from apps.customers.models import Customer
from apps.events.usage import UsageKey
from apps.features.models import Feature

from .evaluation import DIGITS, Observation
from .models import AlertRule, Metric

UNITS = {
    Metric.COST: "usd",
    Metric.REVENUE: "usd",
    Metric.MARGIN_AMOUNT: "usd",
    Metric.MARGIN_PERCENT: "percent",
    Metric.USAGE_UNITS: "units",
    Metric.UNPRICED_EVENTS: "events",
    Metric.KEY_BUDGET_PERCENT: "percent",
    Metric.COST_SPIKE: "ratio",
}


def _pruned(value: Any) -> Any:
    """``value`` without None, empty strings, lists or objects (at any depth)."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, "", [], {})}
    return value


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else decimal_str(value)


def subject_names(rule: AlertRule, keys: list[UsageKey]) -> dict[str, dict[uuid.UUID, str]]:
    """The public names of the subjects' customers, features and keys (one query each)."""
    env = rule.environment_id
    customers = {k.customer_id for k in keys if k.customer_id}
    features = {k.feature_id for k in keys if k.feature_id}
    api_keys = {k.api_key_id for k in keys if k.api_key_id}
    return {
        "customer": dict(
            scoped(Customer, env).filter(pk__in=customers).values_list("pk", "reference_id")
        )
        if customers
        else {},
        "feature": dict(scoped(Feature, env).filter(pk__in=features).values_list("pk", "key"))
        if features
        else {},
        "api_key": {
            key.pk: str(key)
            for key in scoped(ApiKey, env).filter(pk__in=api_keys).only("prefix", "hint")
        }
        if api_keys
        else {},
    }


def _subject(key: UsageKey, names: dict[str, dict[uuid.UUID, str]]) -> dict[str, Any]:
    return {
        "customerReferenceId": names["customer"].get(key.customer_id) if key.customer_id else None,
        "featureKey": names["feature"].get(key.feature_id) if key.feature_id else None,
        "model": key.model,
        "provider": key.provider,
        "apiKeyId": str(key.api_key_id) if key.api_key_id else None,
        "apiKey": names["api_key"].get(key.api_key_id) if key.api_key_id else None,
    }


def _money(obs: Observation, target_pct: Decimal) -> dict[str, Any]:
    m = obs.measures
    with localcontext(prec=DIGITS):
        at_target = m.revenue_usd * target_pct / 100
    return {
        "cost": _dec(m.cost_usd),
        "revenue": _dec(m.revenue_usd),
        "margin": _dec(m.margin_usd),
        "marginAtTarget": _dec(at_target),
        "targetMarginPercent": _dec(target_pct),
        "unpricedEvents": m.unpriced_count,
        "events": m.event_count,
    }


def build(
    *,
    kind: str,
    notification_id: uuid.UUID,
    rule: AlertRule,
    obs: Observation,
    threshold: dict[str, str],
    names: dict[str, dict[uuid.UUID, str]],
    now: dt.datetime,
) -> dict[str, Any]:
    """The message of one transition (JSON-ready: decimals as strings)."""
    payload = {
        "type": kind,
        "id": str(notification_id),
        "createdAt": now.isoformat(),
        "severity": threshold.get("severity", "warning"),
        "environment": rule.environment.kind,
        "rule": {
            "id": str(rule.pk),
            "name": rule.name,
            "metric": rule.metric,
            "scope": rule.scope,
            "operator": rule.operator,
        },
        "subject": _subject(obs.key, names),
        "threshold": threshold["value"],
        "observed": _dec(obs.value),
        "unit": UNITS[Metric(rule.metric)],
        "window": {
            "kind": rule.window,
            "start": obs.start.isoformat(),
            "end": obs.end.isoformat(),
        },
        "baseline": _dec(obs.baseline),
        "cost": _dec(obs.measures.cost_usd) if rule.metric == Metric.COST_SPIKE else None,
        "money": _money(obs, target_margin(rule.environment)),
        "dashboardUrl": f"{settings.SITE_URL}/alerts?notification={notification_id}",
    }
    pruned = _pruned(payload)
    pruned.setdefault("subject", {"scope": "environment"})
    return pruned
