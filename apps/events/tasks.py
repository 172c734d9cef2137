"""Celery tasks of the ledger: ids and ISO strings in, idempotent, safe to retry."""

from __future__ import annotations

import datetime as dt
import uuid

from celery import shared_task

from .services import event_partitions_ensure, events_recost


def _when(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


@shared_task
def recost_events(
    *,
    environment_id: str | None = None,
    model: str | None = None,
    start: str | None = None,
    end: str | None = None,
    reprice_all: bool = False,
    actor: str = "task",
) -> int | None:
    """Re-price events (see ``services.events_recost``); the RecostRun id, if one was kept."""
    run = events_recost(
        actor=actor,
        environment_id=uuid.UUID(environment_id) if environment_id else None,
        model=model,
        start=_when(start),
        end=_when(end),
        reprice_all=reprice_all,
        # A manual request always leaves its audit row; the hourly sweep only when it priced.
        keep_empty_run=actor != "schedule",
    )
    return run.pk if run is not None else None


@shared_task
def recost_unpriced_events() -> int | None:
    """Hourly sweep: price what became priceable (a new catalog version, a new override)."""
    return recost_events(actor="schedule")


@shared_task
def ensure_event_partitions() -> list[str]:
    """Daily: keep monthly partitions of events_event created months ahead."""
    return event_partitions_ensure()
