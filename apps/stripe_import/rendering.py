"""JSON shape of import jobs and imported subscriptions (amounts as decimal strings)."""

from __future__ import annotations

from typing import Any

from .models import ImportedSubscription, ImportJob


def job_percent(job: ImportJob) -> int:
    """0-100 for the progress bar: a finished job is 100; a running one moves through the
    four phases, each a quarter, and within a phase by the objects done of those read."""
    if job.status == ImportJob.Status.COMPLETED:
        return 100
    phases: list[str] = [
        ImportJob.Phase.CUSTOMERS.value,
        ImportJob.Phase.PRODUCTS.value,
        ImportJob.Phase.PRICES.value,
        ImportJob.Phase.SUBSCRIPTIONS.value,
    ]
    if job.phase not in phases:
        return 100 if job.phase == ImportJob.Phase.DONE else 0
    index = phases.index(job.phase)
    kind = (job.counts or {}).get(str(job.phase), {})
    read = kind.get("read", 0)
    done = sum(n for name, n in kind.items() if name not in {"read", "unsupported"})
    within = min(done / read, 1) if read else 0
    return min(99, int((index + within) * 25))


def render_job(job: ImportJob) -> dict[str, Any]:
    return {
        "jobId": str(job.pk),
        "status": job.status.upper(),
        "phase": job.phase.upper(),
        "percent": job_percent(job),
        "total": job.total,
        "processed": job.processed,
        "failed": job.failed,
        "counts": job.counts,
        "errors": job.errors,
        "error": job.error or None,
        "createdAt": job.created_at,
        "startedAt": job.started_at,
        "finishedAt": job.finished_at,
        "updatedAt": job.updated_at,
    }


def render_subscription(row: ImportedSubscription) -> dict[str, Any]:
    return {
        "stripeSubscriptionId": row.stripe_id,
        "stripeCustomerId": row.stripe_customer_id,
        "customerReferenceId": row.customer.reference_id,
        "status": row.status.upper(),
        "currency": row.currency,
        # Licensed recurring items' price x quantity per interval (major units, exact).
        "amount": row.amount,
        "interval": row.interval.upper() or None,
        "intervalCount": row.interval_count,
        "items": row.items,
        "startedAt": row.started_at,
        "trialEnd": row.trial_end,
        "endedAt": row.ended_at,
        "cancelAt": row.cancel_at,
        "currentPeriodStart": row.current_period_start,
        "currentPeriodEnd": row.current_period_end,
        # The span counted as revenue in the margin views (null: never; USD only).
        "revenueFrom": row.revenue_from,
        "revenueUntil": row.revenue_until,
        "countsAsRevenue": row.revenue_from is not None and row.currency == "USD",
        "metadata": row.metadata,
        "importedAt": row.imported_at,
        "updatedAt": row.updated_at,
    }
