"""Celery tasks of simulations: take the simulation's id; safe to run twice."""

from __future__ import annotations

from celery import shared_task

from .services import simulation_run


@shared_task
def run_simulation(simulation_id: str) -> str | None:
    """Run a queued simulation (a finished, running or cancelled one is left alone)."""
    simulation = simulation_run(simulation_id=simulation_id)
    return None if simulation is None else simulation.status
