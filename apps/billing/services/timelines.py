"""What the billing jobs walk: the plans and rules of the environments billed (loaded once
per run), each subscription's timeline of periods, and the boundaries a run invoices."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from django.db.models import Q

from apps.billing.periods import Period, Timeline
from apps.core.tenancy import scoped_to_environments
from apps.credits.models import PlanCreditAllocation
from apps.features.models import Feature
from apps.plans.models import Plan, PlanFeatureRule
from apps.subscriptions.models import Subscription, SubscriptionChange

BATCH_SIZE = 500

IN_ADVANCE = Plan.BillingTiming.IN_ADVANCE


@dataclasses.dataclass
class _Boundary:
    at: dt.datetime
    prev: Period | None  # the period ending here (None at the first paid start)
    next: Period | None  # the period starting here (None when the subscription ended)


def _boundaries(timeline: Timeline, after: dt.datetime | None, now: dt.datetime) -> list[_Boundary]:
    """The period boundaries in ``(after, now]``, in order."""
    out: list[_Boundary] = []
    previous: Period | None = None
    for period in timeline.periods_from(after or timeline.paid_start):
        if period.start > now:
            break
        if after is None or period.start > after:
            contiguous = previous if previous and previous.end == period.start else None
            out.append(_Boundary(period.start, contiguous, period))
        ended = timeline.ends_at is not None and period.end == timeline.ends_at
        if ended and period.end <= now and (after is None or period.end > after):
            out.append(_Boundary(period.end, period, None))
        previous = period
    return out


@dataclasses.dataclass
class _Plan:
    """What the cycle will write for one subscription."""

    subscription: Subscription
    timeline: Timeline
    after: dt.datetime | None
    boundaries: list[_Boundary]
    history_end: dt.datetime | None  # usage billed by earlier runs: [paid_start, history_end)


class _Catalog:
    """Plans, rules and features of the environments being billed, loaded once per run."""

    def __init__(self) -> None:
        self.plans: dict[Any, Plan] = {}
        self.rules_of: dict[Any, list[PlanFeatureRule]] = {}
        self.features: dict[Any, Feature] = {}
        self.allocated_plan_keys: dict[Any, set[str]] = {}
        self._loaded: set[Any] = set()

    def load(self, environment_ids: Iterable[Any]) -> None:
        missing = set(environment_ids) - self._loaded
        if not missing:
            return
        for plan in scoped_to_environments(Plan, missing):
            self.plans[plan.pk] = plan
        for rule in scoped_to_environments(PlanFeatureRule, missing).order_by("created_at", "id"):
            self.rules_of.setdefault(rule.plan_id, []).append(rule)
        feature_ids = {r.feature_id for rules in self.rules_of.values() for r in rules}
        for feature in Feature.objects.filter(pk__in=feature_ids - set(self.features)):
            self.features[feature.pk] = feature
        for env_id, key in scoped_to_environments(
            PlanCreditAllocation.objects, missing
        ).values_list("environment_id", "plan_key"):
            self.allocated_plan_keys.setdefault(env_id, set()).add(key)
        self._loaded |= missing


def _timelines(subscriptions: Sequence[Subscription], catalog: _Catalog, now: dt.datetime) -> dict:
    ids = [s.pk for s in subscriptions]
    changes: dict[Any, list[SubscriptionChange]] = defaultdict(list)
    for change in SubscriptionChange.objects.filter(subscription_id__in=ids).filter(
        Q(status=SubscriptionChange.Status.COMPLETED)
        | Q(status=SubscriptionChange.Status.PENDING, effective_at__lte=now)
    ):
        changes[change.subscription_id].append(change)
    return {s.pk: Timeline(s, changes[s.pk], catalog.plans) for s in subscriptions}


def _plans_of(timeline: Timeline) -> set[Any]:
    ids = {timeline.subscription.plan_id}
    for change in timeline.changes:
        ids |= {change.from_plan_id, change.to_plan_id}
    return ids
