"""Writes of the Stripe app: connect, disconnect, sync status.

Connect and disconnect call Stripe (to check the key, to create or delete the
webhook endpoint) before and after their database transaction, never inside it.
"""

from __future__ import annotations

import logging
import re
import secrets
import uuid
from typing import Any, cast

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from djstripe.models import WebhookEndpoint

from apps.accounts.audit import Actor, audit_record
from apps.accounts.models import Environment
from apps.billing.models import StripeMode
from apps.billing.services import billing_settings_update
from apps.core import crypto
from apps.core.errors import Conflict, TansoError, ValidationFailed
from apps.core.tenancy import scoped

from . import errors
from .client import client_for_key, write_options
from .models import StripeConnection
from .webhooks import _handlers

logger = logging.getLogger(__name__)

_KEY = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9]{8,247}$")


class StripeUnreachable(TansoError):
    status = 502
    code = errors.STRIPE_UNREACHABLE
    default_message = "Stripe could not be reached; try again."


def _check_key_format(environment: Environment, api_key: str) -> tuple[str, bool]:
    """(key type, livemode) of a well-formed key of the environment's mode."""
    match = _KEY.match(api_key)
    if not match:
        raise ValidationFailed(
            fields={"stripeSecretKey": ["A Stripe secret (sk_…) or restricted (rk_…) key."]}
        )
    livemode = match.group(2) == "live"
    if livemode != (environment.kind == Environment.Kind.LIVE):
        want = "live" if environment.kind == Environment.Kind.LIVE else "test"
        raise ValidationFailed(
            fields={
                "stripeSecretKey": [
                    f"This is the {environment.kind} environment: use a {want} key."
                ]
            }
        )
    key_type = (
        StripeConnection.KeyType.SECRET
        if match.group(1) == "sk"
        else StripeConnection.KeyType.RESTRICTED
    )
    return key_type, livemode


def _validate_with_stripe(client: stripe.StripeClient) -> str:
    """One cheap call proves the key works; returns the account id when Stripe tells it."""
    try:
        client.v1.customers.list(params={"limit": 1})
    except stripe.AuthenticationError:
        raise ValidationFailed(
            "Stripe refused this key.",
            code=errors.STRIPE_KEY_INVALID,
            fields={"stripeSecretKey": ["Stripe refused this key."]},
        ) from None
    except stripe.PermissionError:
        raise ValidationFailed(
            "This restricted key cannot read customers.",
            code=errors.STRIPE_KEY_INVALID,
            fields={"stripeSecretKey": ["The key needs read access to Customers."]},
        ) from None
    except stripe.APIConnectionError:
        raise StripeUnreachable() from None
    except stripe.StripeError as exc:
        raise ValidationFailed(
            f"Stripe answered: {exc.user_message or exc.__class__.__name__}",
            code=errors.STRIPE_KEY_INVALID,
        ) from None
    try:
        return str(client.v1.accounts.retrieve_current().id or "")
    except stripe.StripeError:
        return ""  # restricted keys often cannot read the account: not needed


def webhook_event_types() -> list[str]:
    """The event types some handler is registered for (what the endpoint subscribes to)."""
    return sorted(event_type for event_type, funcs in _handlers.items() if funcs)


def webhook_url(endpoint_uuid: uuid.UUID) -> str:
    path = reverse("djstripe:djstripe_webhook_by_uuid", kwargs={"uuid": endpoint_uuid})
    return f"{settings.STRIPE_WEBHOOK_BASE_URL}{path}"


def _create_stripe_endpoint(
    client: stripe.StripeClient, environment: Environment, endpoint_uuid: uuid.UUID
) -> tuple[str, str, str] | None:
    """(stripe id, secret, api version) of a webhook endpoint created in Stripe, or None
    when the account does not let this key create one (the caller makes its own secret)."""
    try:
        endpoint = client.v1.webhook_endpoints.create(
            params={
                "url": webhook_url(endpoint_uuid),
                "enabled_events": cast("Any", webhook_event_types() or ["*"]),
                "description": f"Tanso ({environment.kind})",
                "metadata": {
                    "djstripe_uuid": str(endpoint_uuid),
                    "tanso_environment": str(environment.pk),
                },
            },
            options=write_options("whep", endpoint_uuid, "create"),
        )
    except stripe.APIConnectionError:
        raise StripeUnreachable() from None
    except stripe.StripeError as exc:
        logger.info(
            "stripe webhook endpoint not created (%s): local secret", exc.__class__.__name__
        )
        return None
    return (
        str(endpoint.id),
        str(endpoint.secret or ""),
        str(getattr(endpoint, "api_version", "") or ""),
    )


def _delete_stripe_endpoint(api_key: str, stripe_endpoint_id: str) -> None:
    """Best effort (disconnecting must work when Stripe is down or the key was revoked)."""
    try:
        client_for_key(api_key).v1.webhook_endpoints.delete(stripe_endpoint_id)
    except stripe.StripeError as exc:
        logger.info("stripe webhook endpoint %s not deleted: %s", stripe_endpoint_id, exc)


def stripe_connect(
    *, environment: Environment, api_key: str, actor: Actor
) -> tuple[StripeConnection, str | None]:
    """Check ``api_key`` with Stripe, store it encrypted and set up the webhook endpoint.

    Returns the connection and, when Stripe did not create the endpoint (the key may
    not), the signing secret we generated, to be entered in Stripe with the endpoint URL
    (shown once). Connecting again replaces the key and the endpoint.
    """
    api_key = api_key.strip()
    key_type, livemode = _check_key_format(environment, api_key)
    client = client_for_key(api_key)
    account_id = _validate_with_stripe(client)
    previous = scoped(StripeConnection, environment).select_related("webhook_endpoint").first()
    endpoint_uuid = uuid.uuid4()
    created = _create_stripe_endpoint(client, environment, endpoint_uuid)
    if created is not None:
        stripe_endpoint_id, secret, api_version = created
        source = StripeConnection.WebhookSource.STRIPE
        shown_secret = None
    else:
        stripe_endpoint_id = f"we_tanso_{endpoint_uuid.hex}"
        secret = f"whsec_{secrets.token_urlsafe(32)}"
        api_version = ""
        source = StripeConnection.WebhookSource.LOCAL
        shown_secret = secret
    now = timezone.now()
    try:
        with transaction.atomic():
            endpoint = WebhookEndpoint.objects.create(
                id=stripe_endpoint_id,
                livemode=livemode,
                url=webhook_url(endpoint_uuid),
                secret=secret,
                status="enabled",
                enabled_events=webhook_event_types() or ["*"],
                api_version=api_version,
                djstripe_uuid=endpoint_uuid,
                djstripe_validation_method="verify_signature",
                metadata={"tanso_environment": str(environment.pk)},
            )
            row = scoped(StripeConnection.objects.select_for_update(), environment).first()
            old_endpoint_id = row.webhook_endpoint_id if row else None
            if row is None:
                row = StripeConnection(environment=environment)
            row.key_encrypted = crypto.encrypt(api_key)
            row.key_hint = crypto.hint(api_key)
            row.key_type = key_type
            row.livemode = livemode
            row.account_id = account_id
            row.webhook_endpoint = endpoint
            row.webhook_source = source
            row.connected_at = now
            row.last_error = ""
            row.last_error_at = None
            row.updated_at = now
            row.save()
            if old_endpoint_id:
                WebhookEndpoint.objects.filter(djstripe_id=old_endpoint_id).delete()
            audit_record(
                organization=environment.organization,
                environment=environment,
                action="stripe.connected",
                target_type="stripe_connection",
                target_id=row.pk,
                actor=actor,
                detail={"keyHint": row.key_hint, "keyType": key_type, "accountId": account_id},
            )
    except IntegrityError:
        raise Conflict("Another connect of this environment is under way; try again.") from None
    if previous is not None and previous.webhook_source == StripeConnection.WebhookSource.STRIPE:
        old = previous.webhook_endpoint
        if old is not None and old.id != stripe_endpoint_id:
            _delete_stripe_endpoint(crypto.decrypt(previous.key_encrypted), old.id)
    return row, shown_secret


def stripe_disconnect(*, environment: Environment, actor: Actor) -> None:
    """Forget the key and the webhook endpoint (webhooks to it are then 404) and reset the
    mode to none. Idempotent."""
    with transaction.atomic():
        row = scoped(
            StripeConnection.objects.select_for_update(of=("self",)).select_related(
                "webhook_endpoint"
            ),
            environment,
        ).first()
        stripe_endpoint: tuple[str, str] | None = None
        if row is not None:
            endpoint = row.webhook_endpoint
            if endpoint is not None:
                if row.webhook_source == StripeConnection.WebhookSource.STRIPE:
                    stripe_endpoint = (crypto.decrypt(row.key_encrypted), endpoint.id)
                endpoint.delete()
            row.delete()
            audit_record(
                organization=environment.organization,
                environment=environment,
                action="stripe.disconnected",
                target_type="stripe_connection",
                target_id=row.pk,
                actor=actor,
            )
        billing_settings_update(environment=environment, stripe_mode=StripeMode.NONE)
    if stripe_endpoint is not None:
        _delete_stripe_endpoint(*stripe_endpoint)


def stripe_sync_record(
    *,
    environment_id: Any,
    counts: dict[str, int] | None = None,
    error: str | None = None,
) -> None:
    """Note a sync on the connection for the settings page: the time, added counts
    (``{"invoicesPushed": 1}``), and the error (``""`` clears it). No connection: nothing."""
    now = timezone.now()
    with transaction.atomic():
        row = scoped(StripeConnection.objects.select_for_update(), environment_id).first()
        if row is None:
            return
        fields = ["last_sync_at", "updated_at"]
        row.last_sync_at = now
        row.updated_at = now
        if counts:
            merged = dict(row.sync_counts or {})
            for name, value in counts.items():
                merged[name] = int(merged.get(name, 0)) + int(value)
            row.sync_counts = merged
            fields.append("sync_counts")
        if error is not None:
            row.last_error = error[:2000]
            row.last_error_at = now if error else None
            fields += ["last_error", "last_error_at"]
        row.save(update_fields=fields)
