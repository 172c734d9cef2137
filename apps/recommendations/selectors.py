"""Reads of the recommendations: the ranked list, one finding, compute runs, and the
environment's table of comparable models. Every function takes the environment first."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from django.db.models import Q, QuerySet

from apps.core.api.pagination import decode_cursor, encode_cursor
from apps.core.errors import InvalidQuery
from apps.core.tenancy import get_scoped_or_404, scoped

from .models import ComparableModel, ComputeRun, DefaultComparableModel, Recommendation

if TYPE_CHECKING:
    from apps.accounts.models import Environment

Status = Recommendation.Status
# ?status=: the statuses a list may ask for; "all" is every one.
STATUS_FILTERS = (*Status.values, "all")


def effective_status(recommendation: Recommendation, now: dt.datetime) -> str:
    """A snooze that has ended reads as open (the next compute stores it so)."""
    if recommendation.status == Status.SNOOZED and (
        recommendation.snoozed_until is None or recommendation.snoozed_until <= now
    ):
        return Status.OPEN
    return recommendation.status


def _status_q(status: str, now: dt.datetime) -> Q:
    if status == Status.OPEN:
        return Q(status=Status.OPEN) | Q(status=Status.SNOOZED, snoozed_until__lte=now)
    if status == Status.SNOOZED:
        return Q(status=Status.SNOOZED, snoozed_until__gt=now)
    return Q(status=status)


@dataclass(frozen=True, slots=True)
class RecommendationPage:
    items: list[Recommendation]
    next_cursor: str | None
    has_more: bool


def recommendations_ranked(
    environment: Environment,
    *,
    now: dt.datetime,
    status: str = Status.OPEN,
    kinds: list[str] | None = None,
) -> QuerySet[Recommendation]:
    """The environment's findings by money at stake, the largest first (ties: by id)."""
    rows = scoped(Recommendation, environment)
    if status != "all":
        rows = rows.filter(_status_q(status, now))
    if kinds:
        rows = rows.filter(kind__in=kinds)
    return rows.order_by("-money_at_stake_monthly", "id")


def recommendations_page(
    rows: QuerySet[Recommendation], *, limit: int, cursor: str | None
) -> RecommendationPage:
    """One page of a ranked list; the cursor holds the last row's (stake, id)."""
    if cursor:
        stake_text, last_text = decode_cursor(cursor)
        try:
            stake, last_id = Decimal(stake_text), uuid.UUID(last_text)
        except (InvalidOperation, ValueError):
            raise InvalidQuery(fields={"cursor": ["Malformed cursor."]}) from None
        if not stake.is_finite():
            raise InvalidQuery(fields={"cursor": ["Malformed cursor."]})
        rows = rows.filter(
            Q(money_at_stake_monthly__lt=stake) | Q(money_at_stake_monthly=stake, id__gt=last_id)
        )
    found = list(rows[: limit + 1])
    has_more = len(found) > limit
    found = found[:limit]
    next_cursor = (
        encode_cursor([found[-1].money_at_stake_monthly, found[-1].pk]) if has_more else None
    )
    return RecommendationPage(items=found, next_cursor=next_cursor, has_more=has_more)


def recommendation_get(environment: Environment, recommendation_id: object) -> Recommendation:
    return get_scoped_or_404(Recommendation, environment, pk=recommendation_id)


def compute_run_get(environment: Environment, run_id: object) -> ComputeRun:
    return get_scoped_or_404(ComputeRun, environment, pk=run_id)


@dataclass(frozen=True, slots=True)
class ComparablePair:
    """One row of the environment's table: a shipped default or its own row."""

    from_provider: str
    from_model: str
    to_provider: str
    to_model: str
    enabled: bool
    source: str  # "default" | "environment"
    note: str
    row: ComparableModel | None  # the environment's own row, if any

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.from_provider, self.from_model, self.to_provider, self.to_model)


def comparable_table(environment: Environment) -> list[ComparablePair]:
    """The shipped pairs overlaid with the environment's rows (which add pairs, or hide a
    default with ``enabled = false``), in (from, to) order."""
    table: dict[tuple[str, str, str, str], ComparablePair] = {}
    for default in DefaultComparableModel.objects.all():
        pair = ComparablePair(
            default.from_provider,
            default.from_model,
            default.to_provider,
            default.to_model,
            enabled=True,
            source="default",
            note=default.note,
            row=None,
        )
        table[pair.key] = pair
    for own in scoped(ComparableModel, environment):
        pair = ComparablePair(
            own.from_provider,
            own.from_model,
            own.to_provider,
            own.to_model,
            enabled=own.enabled,
            source="default"
            if (own.from_provider, own.from_model, own.to_provider, own.to_model) in table
            else "environment",
            note=own.note,
            row=own,
        )
        table[pair.key] = pair
    return [table[key] for key in sorted(table)]


def comparable_pairs(environment: Environment) -> list[tuple[str, str, str, str]]:
    """The pairs in use: (from provider, from model, to provider, to model)."""
    return [pair.key for pair in comparable_table(environment) if pair.enabled]


def comparable_model_get(environment: Environment, row_id: object) -> ComparableModel:
    return get_scoped_or_404(ComparableModel, environment, pk=row_id)
