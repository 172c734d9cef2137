"""The import task: a second delivery of a job does nothing; Stripe refusing the key or
unreachable fails the job with the reason (after the retries)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.accounts.audit import Actor
from apps.core import crypto
from apps.stripe_import import tasks
from apps.stripe_import.models import ImportedCustomer, ImportJob
from apps.stripe_import.services import stripe_import_start
from apps.stripe_sync.models import StripeConnection
from tests.conftest import Tenant
from tests.stripe_peer.fixtures import StripePeer

from .conftest import importing, stripe_customer

pytestmark = pytest.mark.django_db


def _job(tenant: Tenant) -> ImportJob:
    # In a test transaction the on-commit enqueue never fires: the test runs the task.
    return stripe_import_start(environment=tenant.test, actor=Actor.system())


def test_a_job_runs_once(tenant: Tenant, peer: StripePeer) -> None:
    stripe = importing(tenant, peer)
    stripe_customer(stripe, metadata={"customerReferenceId": "acme"})
    job = _job(tenant)
    first = tasks.run_stripe_import.apply(args=[str(job.pk)]).get()
    assert first["status"] == "completed" and first["processed"] == 1
    again = tasks.run_stripe_import.apply(args=[str(job.pk)]).get()
    assert again == {"job": str(job.pk), "skipped": True}
    job.refresh_from_db()
    assert (job.status, job.attempts, job.total) == ("completed", 1, 1)
    assert ImportedCustomer.objects.filter(environment=tenant.test).count() == 1


def test_a_refused_key_fails_the_job(tenant: Tenant, peer: StripePeer) -> None:
    importing(tenant, peer)
    job = _job(tenant)
    # The key was revoked in Stripe meanwhile (the peer refuses anything but sk_ keys).
    StripeConnection.objects.filter(environment=tenant.test).update(
        key_encrypted=crypto.encrypt("revoked_key")
    )
    tasks.run_stripe_import.apply(args=[str(job.pk)])
    shown = tenant.api().get(f"/api/v1/client/stripe/import/status/{job.pk}").json()
    assert shown["status"] == "FAILED"
    assert shown["error"].startswith("Stripe refused the key")
    assert shown["finishedAt"] is not None


def test_stripe_unreachable_fails_after_the_retries(
    tenant: Tenant, peer: StripePeer, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    importing(tenant, peer)
    job = _job(tenant)
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there
    monkeypatch.setattr(tasks, "RETRY_DELAYS", ())  # the last retry: no more left
    tasks.run_stripe_import.apply(args=[str(job.pk)])
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error.startswith("Stripe could not be reached")
