"""Writes of the recommendations: computing and storing the findings, the operator's
decisions (dismiss, snooze, apply, reopen), compute runs, and the environment's table of
comparable models (docs/recommendations.md)."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.core.errors import ValidationFailed
from apps.core.tenancy import scoped

from .advice.cheaper import cheaper_findings
from .advice.common import ZERO, AdviceWindow, Finding, advice_window
from .advice.free_plans import free_plan_findings
from .advice.ledger import read_window
from .advice.margins import margin_findings
from .advice.plans import plan_findings
from .advice.unpriced import unpriced_findings
from .errors import RecommendationResolved
from .models import ComparableModel, ComputeRun, Recommendation, finding_id
from .selectors import comparable_pairs

if TYPE_CHECKING:
    from apps.accounts.models import Environment

logger = logging.getLogger(__name__)

Status = Recommendation.Status
# The steps of a compute, for its progress: read, cheaper models, margins, unpriced, plans
# (prices and free-plan outliers), store.
STEPS = 6
# Applied findings are checked again this many days after being applied.
CHECK_AFTER_DAYS = (7, 30)
# Kinds whose finding is kept even with no money at stake (the cost is unknown).
KEPT_AT_ZERO = {Recommendation.Kind.UNPRICED_MODEL}
_FIGURES = [
    "title",
    "money_at_stake_monthly",
    "direction",
    "confidence",
    "assumptions",
    "evidence",
    "action",
    "window_start",
    "window_end",
    "computed_at",
]
_DECISION = [
    "status",
    "snoozed_until",
    "decided_at_stake",
    "status_changed_at",
    "checks",
]


@dataclass(frozen=True, slots=True)
class ComputeResult:
    window: AdviceWindow
    findings: int  # stored by this compute (any status)
    open_findings: int
    open_stake: Decimal  # USD per month, the open findings'
    created: int
    reopened: int
    resolved: int


def recommendations_compute(
    *,
    environment: Environment,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    now: dt.datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> ComputeResult:
    """Compute every kind of finding over the window and store them (see :func:`_store`)."""
    now = now or timezone.now()
    step = progress or (lambda _done: None)
    window = advice_window(environment, start=start, end=end, now=now)
    read = read_window(environment, window)
    step(1)
    cheaper, swaps = cheaper_findings(environment, window, read, comparable_pairs(environment))
    step(2)
    margins = margin_findings(window, read, swaps)
    step(3)
    unpriced = unpriced_findings(environment, window, read)
    step(4)
    plans = [
        *plan_findings(environment, window, read),
        *free_plan_findings(environment, window, read),
    ]
    step(5)
    findings = [
        f
        for f in (*cheaper, *margins, *unpriced, *plans)
        if f.stake_cents > 0 or f.kind in KEPT_AT_ZERO
    ]
    result = _store(environment, findings, window, now)
    step(STEPS)
    return result


def _lock(environment: Environment) -> None:
    """One compute of an environment at a time (the nightly sweep beside an API call)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            [f"recommendations:{environment.pk}"],
        )


@transaction.atomic
def _store(
    environment: Environment, findings: list[Finding], window: AdviceWindow, now: dt.datetime
) -> ComputeResult:
    """Insert new findings, refresh known ones (their ids are stable), and decide their
    status: a dismissed or snoozed finding reopens when its money at stake has doubled
    since the decision, a snooze ends at its time, a resolved one that returns reopens,
    and an open or snoozed one this compute no longer finds is resolved."""
    _lock(environment)
    existing = {row.pk: row for row in scoped(Recommendation, environment).select_for_update()}
    seen: set[object] = set()
    new, changed = [], []
    counts = {"reopened": 0, "resolved": 0}
    for finding in findings:
        row_id = finding_id(environment.pk, finding.kind, finding.subject)
        if row_id in seen:
            continue
        seen.add(row_id)
        row = existing.get(row_id)
        if row is None:
            row = Recommendation(id=row_id, environment=environment, kind=finding.kind)
            row.subject, row.first_seen_at, row.status_changed_at = finding.subject, now, now
            _figures(row, finding, window, now)
            new.append(row)
            continue
        _figures(row, finding, window, now)
        counts["reopened"] += _decide(row, now)
        changed.append(row)
    for row_id, row in existing.items():
        if row_id not in seen:
            counts["resolved"] += _vanished(row, now)
            changed.append(row)
    Recommendation.objects.bulk_create(new)
    Recommendation.objects.bulk_update(changed, [*_FIGURES, *_DECISION], batch_size=500)
    stored = [*new, *[row for row in changed if row.pk in seen]]
    open_rows = [row for row in stored if row.status == Status.OPEN]
    return ComputeResult(
        window=window,
        findings=len(stored),
        open_findings=len(open_rows),
        open_stake=sum((row.money_at_stake_monthly for row in open_rows), ZERO),
        created=len(new),
        reopened=counts["reopened"],
        resolved=counts["resolved"],
    )


def _figures(row: Recommendation, finding: Finding, window: AdviceWindow, now: dt.datetime) -> None:
    row.title = finding.title[:300]
    row.money_at_stake_monthly = finding.stake_cents
    row.direction = finding.direction
    row.confidence = finding.confidence
    row.assumptions = finding.assumptions
    row.evidence = finding.evidence
    row.action = finding.action
    row.window_start, row.window_end = window.start, window.end
    row.computed_at = now


def _reopen(row: Recommendation, now: dt.datetime) -> None:
    row.status = Status.OPEN
    row.snoozed_until = None
    row.decided_at_stake = None
    row.status_changed_at = now


def _doubled(row: Recommendation) -> bool:
    decided = row.decided_at_stake
    stake = row.money_at_stake_monthly
    return decided is not None and stake > 0 and stake >= 2 * decided


def _decide(row: Recommendation, now: dt.datetime) -> int:
    """The status of a finding found again; 1 when it reopens."""
    if row.status == Status.RESOLVED:
        _reopen(row, now)
        return 1
    if row.status in (Status.DISMISSED, Status.SNOOZED) and _doubled(row):
        _reopen(row, now)
        return 1
    if row.status == Status.SNOOZED and (row.snoozed_until is None or row.snoozed_until <= now):
        _reopen(row, now)
        return 1
    if row.status == Status.APPLIED:
        _check_applied(row, row.money_at_stake_monthly, now)
    return 0


def _vanished(row: Recommendation, now: dt.datetime) -> int:
    """A finding this compute did not find: resolved if it was open or snoozed; an
    applied one is checked with no money at stake left. 1 when it becomes resolved."""
    if row.status in (Status.OPEN, Status.SNOOZED):
        row.status = Status.RESOLVED
        row.snoozed_until = None
        row.status_changed_at = now
        return 1
    if row.status == Status.APPLIED:
        _check_applied(row, ZERO, now)
    return 0


def _check_applied(row: Recommendation, stake_now: Decimal, now: dt.datetime) -> None:
    """Record the check due 7 and 30 days after applying: the money still at stake, and
    the part of the prediction realised (predicted - still at stake)."""
    if row.applied_at is None or row.applied_at_stake is None:
        return
    done = {check["afterDays"] for check in row.checks}
    for days in CHECK_AFTER_DAYS:
        if days not in done and now >= row.applied_at + dt.timedelta(days=days):
            row.checks = [
                *row.checks,
                {
                    "afterDays": days,
                    "at": now.isoformat(),
                    "predicted": str(row.applied_at_stake),
                    "stillAtStake": str(stake_now),
                    "realised": str(row.applied_at_stake - stake_now),
                },
            ]


# --- The operator's decisions ------------------------------------------------------------------


def _decision(row: Recommendation) -> None:
    if row.status == Status.RESOLVED:
        raise RecommendationResolved()


@transaction.atomic
def recommendation_dismiss(
    *, recommendation: Recommendation, now: dt.datetime | None = None
) -> Recommendation:
    """Dismiss: it stays dismissed until its money at stake doubles."""
    _decision(recommendation)
    now = now or timezone.now()
    recommendation.status = Status.DISMISSED
    recommendation.snoozed_until = None
    recommendation.decided_at_stake = recommendation.money_at_stake_monthly
    recommendation.status_changed_at = now
    recommendation.save(update_fields=_DECISION)
    return recommendation


@transaction.atomic
def recommendation_snooze(
    *, recommendation: Recommendation, until: dt.datetime, now: dt.datetime | None = None
) -> Recommendation:
    """Snooze until ``until`` (or until its money at stake doubles, if sooner)."""
    _decision(recommendation)
    now = now or timezone.now()
    if until <= now:
        raise ValidationFailed(fields={"until": ["Must be in the future."]})
    recommendation.status = Status.SNOOZED
    recommendation.snoozed_until = until
    recommendation.decided_at_stake = recommendation.money_at_stake_monthly
    recommendation.status_changed_at = now
    recommendation.save(update_fields=_DECISION)
    return recommendation


@transaction.atomic
def recommendation_apply(
    *, recommendation: Recommendation, now: dt.datetime | None = None
) -> Recommendation:
    """Mark as applied (the change was made): the money at stake now is the prediction
    the checks 7 and 30 days later compare with."""
    _decision(recommendation)
    now = now or timezone.now()
    recommendation.status = Status.APPLIED
    recommendation.snoozed_until = None
    recommendation.decided_at_stake = None
    recommendation.status_changed_at = now
    recommendation.applied_at = now
    recommendation.applied_at_stake = recommendation.money_at_stake_monthly
    recommendation.checks = []
    recommendation.save(update_fields=[*_DECISION, "applied_at", "applied_at_stake"])
    return recommendation


@transaction.atomic
def recommendation_reopen(
    *, recommendation: Recommendation, now: dt.datetime | None = None
) -> Recommendation:
    """Back to open, whatever was decided."""
    _decision(recommendation)
    _reopen(recommendation, now or timezone.now())
    recommendation.save(update_fields=_DECISION)
    return recommendation


# --- Compute runs ---------------------------------------------------------------------------


def compute_run_create(
    *,
    environment: Environment,
    start: dt.datetime | None,
    end: dt.datetime | None,
    requested_by: str,
    now: dt.datetime | None = None,
) -> ComputeRun:
    now = now or timezone.now()
    window = advice_window(environment, start=start, end=end, now=now)
    return ComputeRun.objects.create(
        environment=environment,
        window_start=window.start,
        window_end=window.end,
        steps_total=STEPS,
        requested_by=requested_by[:255],
        created_at=now,
    )


def compute_run_enqueue(*, run: ComputeRun) -> None:
    """Run it in the background once the transaction commits."""
    from .tasks import compute_recommendations_run

    environment_id, run_id = str(run.environment_id), str(run.pk)
    transaction.on_commit(
        lambda: compute_recommendations_run.delay(environment_id=environment_id, run_id=run_id),
        robust=True,
    )


def _progress(runs: QuerySet[ComputeRun], done: int) -> None:
    runs.update(steps_done=done)


def compute_run_execute(*, environment: Environment, run_id: uuid.UUID | str) -> ComputeRun | None:
    """Run a queued compute (idempotent: a run already claimed is left alone)."""
    runs = scoped(ComputeRun, environment).filter(pk=run_id)
    claimed = runs.filter(status=ComputeRun.Status.QUEUED).update(
        status=ComputeRun.Status.RUNNING, started_at=timezone.now()
    )
    run = runs.first()
    if not claimed or run is None:
        return run
    try:
        result = recommendations_compute(
            environment=environment,
            start=run.window_start,
            end=run.window_end,
            progress=lambda done: _progress(runs, done),
        )
    except Exception as exc:
        logger.exception("recommendations: run %s failed", run.pk)
        runs.update(
            status=ComputeRun.Status.FAILED, error=str(exc)[:2000], finished_at=timezone.now()
        )
        raise
    runs.update(
        status=ComputeRun.Status.SUCCEEDED,
        steps_done=STEPS,
        findings=result.open_findings,
        money_at_stake_monthly=result.open_stake,
        finished_at=timezone.now(),
    )
    return runs.first()


# --- The table of comparable models -----------------------------------------------------------


def _norm(value: str) -> str:
    return value.strip().lower()


@transaction.atomic
def comparable_model_set(
    *,
    environment: Environment,
    from_provider: str,
    from_model: str,
    to_provider: str,
    to_model: str,
    enabled: bool = True,
    note: str = "",
) -> ComparableModel:
    """Add a pair to the environment's table, or (``enabled=False``) hide one; setting a
    pair again changes its row."""
    key = {
        "from_provider": _norm(from_provider),
        "from_model": _norm(from_model),
        "to_provider": _norm(to_provider),
        "to_model": _norm(to_model),
    }
    # A model paired with itself is harmless: repricing it saves nothing, so it never
    # yields a finding.
    row, _created = scoped(ComparableModel, environment).update_or_create(
        **key,
        defaults={"enabled": enabled, "note": note, "updated_at": timezone.now()},
        create_defaults={"environment": environment, "enabled": enabled, "note": note},
    )
    return row


def comparable_model_delete(*, row: ComparableModel) -> None:
    """Remove the environment's row: a hidden default is shown again."""
    row.delete()
