"""Celery tasks of Stripe-driven billing: they take ids, call a service, and are idempotent
(mapping rows and idempotency keys for provisioning, the outbox and Stripe's identifier
dedupe for meter events). Transient Stripe failures retry with exponential backoff.

The beat runs :func:`sweep_meter_events` every minute (environments with due meter
events; the ingest kick is the fast path) and :func:`sweep_provisioning` every 15
minutes (what a lost task left unprovisioned).
"""

from __future__ import annotations

import logging
from typing import Any

import stripe
from celery import shared_task
from django.db.models import Exists, OuterRef
from django.utils import timezone

from apps.billing.models import BillingSettings, StripeMode
from apps.core.tenancy import scoped
from apps.customers.models import Customer
from apps.plans.models import Plan
from apps.stripe_sync.services import stripe_sync_record
from apps.subscriptions.models import Subscription

from .models import MeterEvent
from .services import (
    NotStripeDriven,
    meter_events_send,
    stripe_customer_provision,
    stripe_environment_provision,
    stripe_plan_provision,
    stripe_subscription_cancel,
    stripe_subscription_provision,
)

logger = logging.getLogger(__name__)

TRANSIENT = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)
MAX_RETRIES = 12


def _countdown(retries: int) -> int:
    return min(5 * 2**retries, 3600)


@shared_task(bind=True, max_retries=MAX_RETRIES, acks_late=True)
def send_meter_events(self: Any, environment_id: str) -> dict[str, int]:
    """Send the environment's pending meter events (safe to run twice or at once)."""
    result = meter_events_send(environment_id=environment_id)
    counts = {
        "sent": result.sent,
        "duplicates": result.duplicates,
        "failed": result.failed,
        "blocked": result.blocked,
    }
    delivered = result.sent + result.duplicates
    if delivered or result.failed:
        stripe_sync_record(
            environment_id=environment_id,
            counts={"meterEventsSent": delivered, "meterEventsFailed": result.failed},
            error=None
            if not result.failed
            else f"{result.failed} meter event(s) refused by Stripe",
        )
    if result.retry_in is not None:
        raise self.retry(countdown=int(result.retry_in.total_seconds()))
    return counts


def _provision(task: Any, func: Any, environment_id: Any, **kwargs: Any) -> Any:
    """Run a provisioning service: transient Stripe failures retry with backoff; a refusal
    is logged and shown on the connection (settings page), not retried."""
    try:
        return func(**kwargs)
    except NotStripeDriven:
        return None
    except TRANSIENT as exc:
        raise task.retry(exc=exc, countdown=_countdown(task.request.retries)) from exc
    except stripe.StripeError as exc:
        logger.warning("stripe provisioning refused (%s): %s", func.__name__, exc)
        stripe_sync_record(
            environment_id=environment_id,
            error=f"Stripe refused {func.__name__}: {exc.user_message or exc}",
        )
        return None


@shared_task(bind=True, max_retries=MAX_RETRIES, acks_late=True)
def provision_subscription(self: Any, subscription_id: str) -> str | None:
    subscription = (
        Subscription.objects.select_related("customer", "plan").filter(pk=subscription_id).first()
    )
    if subscription is None:
        return None
    link = _provision(
        self,
        stripe_subscription_provision,
        subscription.environment_id,
        subscription=subscription,
    )
    return link.stripe_subscription_id if link is not None else None


@shared_task(bind=True, max_retries=MAX_RETRIES, acks_late=True)
def provision_customer(self: Any, customer_id: str) -> None:
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is not None:
        _provision(self, stripe_customer_provision, customer.environment_id, customer=customer)


@shared_task(bind=True, max_retries=MAX_RETRIES, acks_late=True)
def cancel_subscription(self: Any, subscription_id: str) -> None:
    subscription = Subscription.objects.filter(pk=subscription_id).first()
    if subscription is not None:
        _provision(
            self, stripe_subscription_cancel, subscription.environment_id, subscription=subscription
        )


@shared_task(bind=True, max_retries=MAX_RETRIES, acks_late=True)
def provision_plan(self: Any, plan_id: str) -> None:
    plan = Plan.objects.filter(pk=plan_id, status=Plan.Status.ACTIVE).first()
    if plan is not None:
        _provision(self, stripe_plan_provision, plan.environment_id, plan=plan)


@shared_task(bind=True, max_retries=MAX_RETRIES, acks_late=True)
def provision_environment(self: Any, environment_id: str) -> dict[str, int] | None:
    result = _provision(
        self, stripe_environment_provision, environment_id, environment=environment_id
    )
    if result is None:
        return None
    return {
        "customers": result.customers,
        "plans": result.plans,
        "subscriptions": result.subscriptions,
        "cancelled": result.cancelled,
    }


@shared_task(bind=True, max_retries=MAX_RETRIES, acks_late=True)
def refresh_invoice(self: Any, environment_id: str, stripe_invoice_id: str) -> None:
    """Mirror a Stripe invoice with all its lines (its event carried only the first ones)."""
    from apps.accounts.models import Environment

    from .mirror import stripe_invoice_refresh

    environment = Environment.objects.filter(pk=environment_id).first()
    if environment is not None:
        _provision(
            self,
            stripe_invoice_refresh,
            environment_id,
            environment=environment,
            stripe_invoice_id=stripe_invoice_id,
        )


def _stripe_driven_ids() -> list[Any]:
    return list(
        BillingSettings.objects.filter(stripe_mode=StripeMode.STRIPE_DRIVEN).values_list(
            "environment_id", flat=True
        )
    )


@shared_task
def sweep_meter_events() -> int:
    """Enqueue a sender for each Stripe-driven environment with meter events due."""
    due = scoped(MeterEvent, OuterRef("environment_id")).filter(
        status=MeterEvent.Status.PENDING, next_attempt_at__lte=timezone.now()
    )
    env_ids = list(
        BillingSettings.objects.filter(stripe_mode=StripeMode.STRIPE_DRIVEN)
        .filter(Exists(due))
        .values_list("environment_id", flat=True)
    )
    for env_id in env_ids:
        send_meter_events.delay(str(env_id))
    return len(env_ids)


@shared_task
def sweep_provisioning() -> int:
    """Enqueue a provisioning catch-up for each Stripe-driven environment."""
    env_ids = _stripe_driven_ids()
    for env_id in env_ids:
        provision_environment.delay(str(env_id))
    return len(env_ids)
