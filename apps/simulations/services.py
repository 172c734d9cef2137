"""Running simulations: compute (nothing written but the simulation's own row), store,
run as a job with progress and cancel, and preview one customer."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.accounts.audit import Actor
from apps.accounts.models import Environment
from apps.analytics.selectors import target_margin
from apps.core.errors import Conflict, ValidationFailed
from apps.core.tenancy import scoped

from .catalog import baseline, load_base, scenario_catalogs
from .engine import Progress, rerate
from .models import Simulation
from .request import Cohort, SimulationInput, parse_request
from .results import build_result
from .selectors import cohort_periods, invoiced

logger = logging.getLogger(__name__)

# Cohorts of at most this many subscription periods are answered at once; larger ones run
# as a Celery job.
SYNC_PERIODS = 200


def result_hash(result: dict[str, Any]) -> str:
    body = json.dumps(result, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def _actor_label(actor: Actor) -> str:
    if actor.api_key_id is not None:
        return f"key:{actor.api_key_id}"
    return f"user:{actor.user.pk}" if actor.user is not None else "system"


class _Plan:
    """A validated run: its catalogs and subscription periods, ready to re-rate."""

    def __init__(self, environment: Environment, inputs: SimulationInput, now: dt.datetime):
        self.environment, self.inputs, self.now = environment, inputs, now
        self.base = load_base(environment.pk)
        self.catalogs = [baseline(self.base), *scenario_catalogs(self.base, inputs, now)]
        self.sps = cohort_periods(environment, inputs, self.base, now)
        self.price_at = min(inputs.end, now)

    def compute(self, progress: Progress | None = None) -> dict[str, Any] | None:
        results = rerate(
            self.base, self.catalogs, self.sps, price_at=self.price_at, progress=progress
        )
        if len(results) < len(self.sps):
            return None  # stopped (cancelled)
        return build_result(
            self.inputs,
            results,
            invoiced(self.environment, self.sps),
            target=Decimal(target_margin(self.environment)),
            price_at=self.price_at,
        )


def simulation_compute(
    environment: Environment, inputs: SimulationInput, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The result of ``inputs`` at ``now``, computed here; nothing is written."""
    result = _Plan(environment, inputs, now or timezone.now()).compute()
    assert result is not None
    return result


def simulation_create(
    *,
    environment: Environment,
    inputs: SimulationInput,
    actor: Actor,
    now: dt.datetime | None = None,
) -> Simulation:
    """Store a simulation: computed at once for a small cohort (``completed``), else
    ``queued`` and run by the worker after commit. A 400 when a change names something
    the environment does not have."""
    now = now or timezone.now()
    plan = _Plan(environment, inputs, now)
    simulation = Simulation(
        environment=environment,
        name=inputs.name,
        inputs=inputs.canonical(),
        inputs_hash=inputs.inputs_hash(environment.pk),
        created_by=_actor_label(actor),
        created_at=now,
    )
    if len(plan.sps) <= SYNC_PERIODS:
        result = plan.compute()
        assert result is not None
        _finish(simulation, result, now)
        simulation.save()
        return simulation
    simulation.save()
    from .tasks import run_simulation

    transaction.on_commit(lambda: run_simulation.delay(str(simulation.pk)))
    return simulation


def _finish(simulation: Simulation, result: dict[str, Any], now: dt.datetime) -> None:
    simulation.result = result
    simulation.result_hash = result_hash(result)
    simulation.status = Simulation.Status.COMPLETED
    simulation.progress = 100
    simulation.started_at = simulation.started_at or now
    simulation.finished_at = timezone.now()


def _claim(simulation_id: str) -> Simulation | None:
    """Mark a queued simulation running (None when another run has it, or it finished)."""
    with transaction.atomic():
        simulation = (
            Simulation.objects.select_for_update(skip_locked=True)
            .filter(pk=simulation_id, status=Simulation.Status.QUEUED)
            .first()
        )
        if simulation is None:
            return None
        simulation.status = Simulation.Status.RUNNING
        simulation.started_at = timezone.now()
        simulation.save(update_fields=["status", "started_at"])
        return simulation


def _progress(simulation: Simulation) -> Progress:
    def report(done: int, total: int) -> bool:
        percent = min(99, done * 100 // max(total, 1))
        updated = (
            scoped(Simulation, simulation.environment_id)
            .filter(pk=simulation.pk, status=Simulation.Status.RUNNING)
            .update(progress=percent)
        )
        return updated == 1  # 0: cancelled meanwhile

    return report


def simulation_run(*, simulation_id: str) -> Simulation | None:
    """The job: run a queued simulation with progress; idempotent (a finished or running
    one is left alone); stops when cancelled."""
    simulation = _claim(simulation_id)
    if simulation is None:
        return None
    try:
        inputs = parse_request(simulation.inputs, now=simulation.created_at)
        plan = _Plan(simulation.environment, inputs, simulation.created_at)
        result = plan.compute(_progress(simulation))
    except ValidationFailed as exc:
        # The catalog changed since the request (a plan it names was deleted).
        result, error = None, f"{exc.message} {exc.fields or ''}".strip()
    except Exception:
        logger.exception("simulation %s failed", simulation_id)
        result, error = None, "The simulation could not be computed."
    else:
        error = ""
    with transaction.atomic():
        fresh = Simulation.objects.select_for_update().get(pk=simulation.pk)
        if fresh.status != Simulation.Status.RUNNING:
            return fresh  # cancelled while running
        if result is None:
            fresh.status, fresh.error = Simulation.Status.FAILED, error or "Stopped."
            fresh.finished_at = timezone.now()
        else:
            _finish(fresh, result, timezone.now())
        fresh.save()
        return fresh


def simulation_cancel(*, simulation: Simulation) -> Simulation:
    """Cancel a queued or running simulation (a 409 once it finished)."""
    with transaction.atomic():
        locked = (
            scoped(Simulation, simulation.environment_id).select_for_update().get(pk=simulation.pk)
        )
        if locked.finished:
            raise Conflict(
                f"The simulation is already {locked.status}.", code="simulation_finished"
            )
        locked.status = Simulation.Status.CANCELLED
        locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "finished_at"])
        return locked


def simulation_preview(
    environment: Environment, inputs: SimulationInput, reference: str
) -> dict[str, Any]:
    """One customer's before and after, computed at once (an upcoming-invoice style answer)."""
    one = SimulationInput(
        name=inputs.name,
        start=inputs.start,
        end=inputs.end,
        cohort=Cohort("customers", references=(reference,)),
        scenarios=inputs.scenarios,
        shock_pct=inputs.shock_pct,
    )
    return simulation_compute(environment, one)
