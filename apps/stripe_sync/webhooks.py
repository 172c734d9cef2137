"""Stripe webhook events, each handled once.

dj-stripe's ``ProcessWebhookView`` (``/stripe/webhook/<uuid>/``) finds the
``WebhookEndpoint`` by its uuid, stores a ``WebhookEventTrigger`` and, inside one
transaction, verifies the ``Stripe-Signature`` against the endpoint's secret (a
missing or forged one is a 400 before anything is handled) and sends its
``webhook_pre_process`` signal for a verified trigger. :func:`on_verified_trigger`
(connected by :func:`connect`, from ``StripeSyncConfig.ready``) takes it there.

It finds the environment from the endpoint (``StripeConnection``), inserts a
:class:`StripeWebhookEvent` ``ON CONFLICT (environment, stripe_event_id) DO NOTHING
RETURNING id`` and only when the row is new runs the handlers registered for the
event type, in dj-stripe's transaction. A duplicate delivery finds the row and is
skipped; a concurrent one waits on the unique index until the first commits (then
skips) or rolls back (then handles it). A handler that raises rolls the row back
too (dj-stripe answers 500 and keeps the trigger with the traceback), so Stripe's
retry handles the event again. Unknown types are recorded and ignored.

Deliveries pass limits first (``views.webhook``: size, rate, unverified senders), and
an unverified trigger keeps only the start of its body (:func:`truncate_unverified`).

dj-stripe's own processing comes next (``trigger.process()``: ``Event.process``
would sync the event and its object calling Stripe with a global key, which we do
not have). The receiver therefore records the bare dj-stripe ``Event`` from the
payload, ``ON CONFLICT DO NOTHING``; ``Event.process`` finds it, links it to the
trigger and marks the trigger processed without calling Stripe.

Registering a handler (from any app, imported by its ``AppConfig.ready``)::

    from apps.stripe_sync.webhooks import WebhookContext, webhook_handler

    @webhook_handler("invoice.paid", "invoice.payment_succeeded")
    def on_invoice_paid(ctx: WebhookContext) -> None:
        ...  # ctx.environment, ctx.event (StripeWebhookEvent), ctx.obj (data.object)

Handlers run inside the transaction: enqueue Celery work with
``transaction.on_commit``, never call Stripe from a handler. Every handler for
a type runs, so each must ignore events that are not its business (another
mode, an object it does not map).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from apps.accounts.models import Environment

    from .models import StripeConnection, StripeWebhookEvent

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WebhookContext:
    environment: Environment
    connection: StripeConnection
    event: StripeWebhookEvent

    @property
    def obj(self) -> dict[str, Any]:
        """The Stripe object of the event (``data.object``)."""
        return self.event.data_object

    @property
    def type(self) -> str:
        return self.event.type


Handler = Callable[[WebhookContext], None]
_handlers: dict[str, list[Handler]] = defaultdict(list)


def webhook_handler(*event_types: str) -> Callable[[Handler], Handler]:
    """Register ``func`` for these Stripe event types (registering twice is a no-op)."""
    if not event_types:
        raise ValueError("name at least one Stripe event type")

    def register(func: Handler) -> Handler:
        for event_type in event_types:
            if func not in _handlers[event_type]:
                _handlers[event_type].append(func)
        return func

    return register


def handlers_for(event_type: str) -> list[Handler]:
    return list(_handlers.get(event_type, ()))


_RECORD = """
INSERT INTO stripe_sync_stripewebhookevent
    (environment_id, stripe_event_id, type, livemode, received_at, handled, payload)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (environment_id, stripe_event_id) DO NOTHING
RETURNING id
"""


def record_event(*, environment_id: Any, payload: dict[str, Any], handled: bool) -> int | None:
    """Insert the event once; the new row's id, or None when it was recorded before
    (after waiting for a concurrent insert of the same event to commit or roll back)."""
    with connection.cursor() as cur:
        params: list[Any] = [
            environment_id,
            str(payload["id"]),
            str(payload.get("type") or ""),
            bool(payload.get("livemode")),
            timezone.now(),
            handled,
            Jsonb(payload),
        ]
        cur.execute(_RECORD, params)
        row = cur.fetchone()
    return row[0] if row else None


def handle_event(*, stripe_connection: StripeConnection, payload: dict[str, Any]) -> bool:
    """Record and dispatch one verified event of ``stripe_connection``'s environment.
    True when this call handled it, False for a duplicate. Runs in one transaction."""
    from .models import StripeWebhookEvent

    event_type = str(payload.get("type") or "")
    handlers = handlers_for(event_type)
    with transaction.atomic():
        row_id = record_event(
            environment_id=stripe_connection.environment_id,
            payload=payload,
            handled=bool(handlers),
        )
        if row_id is None:
            logger.info("stripe event %s already handled; skipped", payload.get("id"))
            return False
        if not handlers:
            return True
        event = StripeWebhookEvent.objects.select_related("environment").get(pk=row_id)
        ctx = WebhookContext(
            environment=event.environment, connection=stripe_connection, event=event
        )
        for handler in handlers:
            handler(ctx)
    _mirror(stripe_connection, payload)
    return True


def _mirror(stripe_connection: StripeConnection, payload: dict[str, Any]) -> None:
    """Best effort: keep dj-stripe's local mirror of the object (see docs/stripe.md).
    Never fails the webhook."""
    from .mirror import mirror_object

    try:
        mirror_object(stripe_connection, payload)
    except Exception:  # the mirror is a convenience; the event is handled
        logger.warning("stripe mirror of %s failed", payload.get("id"), exc_info=True)


def on_verified_trigger(sender: Any, instance: Any, **kwargs: Any) -> None:
    """dj-stripe's ``webhook_pre_process``: ``instance`` (a ``WebhookEventTrigger``)
    passed signature verification. Record and dispatch its event (once), then leave
    dj-stripe's processing nothing to do (see the module docstring)."""
    from .models import StripeConnection

    payload = instance.json_body
    if not payload.get("id"):  # dj-stripe refuses these before this signal; be sure
        return
    endpoint = instance.webhook_endpoint
    stripe_connection = (
        StripeConnection.objects.select_related("environment")
        .filter(webhook_endpoint=endpoint)
        .first()
        if endpoint is not None
        else None
    )
    if stripe_connection is None:
        # The endpoint is no longer connected (disconnected): acknowledge, change nothing.
        logger.info("stripe event %s for an unconnected endpoint ignored", payload["id"])
    else:
        handle_event(stripe_connection=stripe_connection, payload=payload)
    record_djstripe_event(payload)


def record_djstripe_event(payload: dict[str, Any]) -> None:
    """dj-stripe's ``Event`` row for the event, from the payload alone (no Stripe call),
    unless it exists (``ON CONFLICT DO NOTHING``: the same event reaches every
    environment connected to the account). ``Event.process`` then returns it as is."""
    from djstripe.models import Event
    from djstripe.utils import convert_tstamp

    created, request = payload.get("created"), payload.get("request")
    if isinstance(request, dict):
        request_id, idempotency_key = request.get("id") or "", request.get("idempotency_key")
    else:
        request_id, idempotency_key = request or "", ""
    Event.objects.bulk_create(
        [
            Event(
                id=str(payload["id"]),
                type=str(payload.get("type") or ""),
                livemode=payload.get("livemode"),
                created=convert_tstamp(created) if isinstance(created, int) else None,
                api_version=str(payload.get("api_version") or ""),
                data=payload.get("data") or {},
                request_id=str(request_id)[:50],
                idempotency_key=str(idempotency_key or ""),
            )
        ],
        ignore_conflicts=True,
    )


# What an unverified delivery keeps of its body (see truncate_unverified).
UNVERIFIED_BODY_KEPT = 500


def truncate_unverified(sender: Any, instance: Any, valid: bool, **kwargs: Any) -> None:
    """dj-stripe's ``webhook_post_validate``: a trigger that failed verification (anyone
    can post to an endpoint's url) keeps only the start of its body, enough to see what
    it was. dj-stripe saves the trigger after this signal, over the full body it
    inserted first."""
    if not valid and len(instance.body) > UNVERIFIED_BODY_KEPT:
        kept = instance.body[:UNVERIFIED_BODY_KEPT]
        instance.body = f"{kept}... [unverified: {len(instance.body)} characters, cut]"


def connect() -> None:
    """Take verified triggers from dj-stripe, and cut unverified ones short
    (``StripeSyncConfig.ready``)."""
    from djstripe.models import WebhookEventTrigger
    from djstripe.signals import webhook_post_validate, webhook_pre_process

    webhook_pre_process.connect(
        on_verified_trigger,
        sender=WebhookEventTrigger,
        dispatch_uid="apps.stripe_sync.webhooks.on_verified_trigger",
    )
    webhook_post_validate.connect(
        truncate_unverified,
        sender=WebhookEventTrigger,
        dispatch_uid="apps.stripe_sync.webhooks.truncate_unverified",
    )
