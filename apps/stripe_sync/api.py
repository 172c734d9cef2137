"""Client API for the Stripe connection: ``/api/v1/client/stripe``.

``GET`` shows the status (``billing.read``); connecting and disconnecting need
``billing.write``. The key is never returned: only its last 4 characters.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.audit import Actor
from apps.apikeys import scopes as S
from apps.apikeys.authentication import environment_of
from apps.apikeys.idempotency import APIView
from apps.billing.selectors import invoice_get
from apps.billing.services import billing_settings_get
from apps.core.api.fields import StrictCharField
from apps.core.errors import ValidationFailed

from .models import StripeConnection, StripeInvoiceSync
from .passthrough import stripe_invoice_push_request
from .selectors import stripe_connection_get, stripe_invoice_sync_get
from .services import stripe_connect, stripe_disconnect


def render_status(environment: Any, connection: StripeConnection | None) -> dict[str, Any]:
    mode = billing_settings_get(environment).stripe_mode.upper()
    if connection is None:
        return {"connected": False, "stripeMode": mode}
    endpoint = connection.webhook_endpoint
    return {
        "connected": True,
        "stripeMode": mode,
        "keyLast4": connection.key_hint,
        "keyType": connection.key_type.upper(),
        "livemode": connection.livemode,
        "accountId": connection.account_id or None,
        "connectedAt": connection.connected_at,
        "webhook": {
            "url": endpoint.url if endpoint else None,
            "source": connection.webhook_source.upper(),
            "enabledEvents": endpoint.enabled_events if endpoint else [],
        },
        "sync": {
            "lastSyncAt": connection.last_sync_at,
            "lastError": connection.last_error or None,
            "lastErrorAt": connection.last_error_at,
            "counts": connection.sync_counts or {},
        },
    }


class ConnectInput(serializers.Serializer):
    # ``keyValue`` is the reference API's name for the same thing.
    stripeSecretKey = StrictCharField(max_length=255, required=False)
    keyValue = StrictCharField(max_length=255, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        key = attrs.get("stripeSecretKey") or attrs.get("keyValue")
        if not key:
            raise serializers.ValidationError({"stripeSecretKey": ["Required."]})
        attrs["key"] = key
        return attrs


_STATUS = inline_serializer(
    "StripeConnectionStatus",
    fields={
        "connected": serializers.BooleanField(),
        "stripeMode": serializers.CharField(),
        "keyLast4": serializers.CharField(required=False),
        "keyType": serializers.CharField(required=False),
        "livemode": serializers.BooleanField(required=False),
        "accountId": serializers.CharField(required=False, allow_null=True),
        "connectedAt": serializers.DateTimeField(required=False),
        "webhook": serializers.DictField(required=False),
        "sync": serializers.DictField(required=False),
        "webhookSecret": serializers.CharField(required=False),
    },
)


class StripeConnectionView(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ, "DELETE": S.BILLING_WRITE}

    @extend_schema(
        summary="The environment's Stripe connection (never the key)",
        request=None,
        responses=_STATUS,
    )
    def get(self, request: Request) -> Response:
        environment = environment_of(request)
        return Response(render_status(environment, stripe_connection_get(environment)))

    @extend_schema(
        summary="Disconnect Stripe: forget the key and webhook endpoint, mode back to NONE",
        request=None,
        responses={200: _STATUS},
    )
    def delete(self, request: Request) -> Response:
        environment = environment_of(request)
        stripe_disconnect(environment=environment, actor=Actor.from_request(request))
        return Response(render_status(environment, None))


class StripeConnect(APIView):
    required_scopes = S.BILLING_WRITE

    @extend_schema(
        summary="Connect Stripe with a secret or restricted key (checked, stored encrypted)",
        request=ConnectInput,
        responses={201: _STATUS},
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationFailed(fields={"_body": ["Expected a JSON object."]})
        body = ConnectInput(data=request.data)
        body.is_valid(raise_exception=True)
        environment = environment_of(request)
        _, secret = stripe_connect(
            environment=environment,
            api_key=body.validated_data["key"],
            actor=Actor.from_request(request),
        )
        connection = stripe_connection_get(environment)
        rendered = render_status(environment, connection)
        if secret:
            # Stripe did not create the endpoint: enter this URL and secret in Stripe (shown once).
            rendered["webhookSecret"] = secret
        return Response(rendered, status=status.HTTP_201_CREATED)


def render_invoice_sync(invoice_id: Any, sync: StripeInvoiceSync | None) -> dict[str, Any]:
    if sync is None:
        return {"invoiceId": invoice_id, "state": "NOT_PUSHED"}
    return {
        "invoiceId": sync.invoice_id,
        "state": sync.state.upper(),
        "stripeInvoiceId": sync.stripe_invoice_id or None,
        "stripeStatus": sync.stripe_status or None,
        "hostedInvoiceUrl": sync.hosted_invoice_url or None,
        "pushAttempts": sync.push_attempts,
        "pushedAt": sync.pushed_at,
        "lastError": sync.last_error or None,
        "paymentFailures": sync.payment_failures,
        "lastPaymentError": sync.last_payment_error or None,
        "lastPaymentFailedAt": sync.last_payment_failed_at,
    }


_INVOICE_SYNC = inline_serializer(
    "StripeInvoiceSync",
    fields={
        "invoiceId": serializers.UUIDField(),
        "state": serializers.ChoiceField(
            choices=["NOT_PUSHED", *(s.upper() for s in StripeInvoiceSync.State.values)]
        ),
        "stripeInvoiceId": serializers.CharField(required=False, allow_null=True),
        "stripeStatus": serializers.CharField(required=False, allow_null=True),
        "hostedInvoiceUrl": serializers.URLField(required=False, allow_null=True),
        "pushAttempts": serializers.IntegerField(required=False),
        "pushedAt": serializers.DateTimeField(required=False, allow_null=True),
        "lastError": serializers.CharField(required=False, allow_null=True),
        "paymentFailures": serializers.IntegerField(required=False),
        "lastPaymentError": serializers.CharField(required=False, allow_null=True),
        "lastPaymentFailedAt": serializers.DateTimeField(required=False, allow_null=True),
    },
)


class StripeInvoiceStatus(APIView):
    """Pass-through: where one of our invoices stands in Stripe."""

    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ}

    @extend_schema(
        summary="Pass-through: the Stripe invoice collecting one of ours (hosted payment URL)",
        request=None,
        responses=_INVOICE_SYNC,
    )
    def get(self, request: Request, invoice_id: str) -> Response:
        environment = environment_of(request)
        invoice = invoice_get(environment, invoice_id)
        return Response(
            render_invoice_sync(invoice.pk, stripe_invoice_sync_get(environment, invoice.pk))
        )


class StripeInvoicePush(APIView):
    """Pass-through: push (again) one invoice to Stripe, e.g. after a failed push."""

    required_scopes = S.BILLING_WRITE

    @extend_schema(
        summary="Pass-through: push one open invoice to Stripe now (202; done by a task)",
        request=None,
        responses={202: _INVOICE_SYNC},
    )
    def post(self, request: Request, invoice_id: str) -> Response:
        environment = environment_of(request)
        invoice = invoice_get(environment, invoice_id)
        sync = stripe_invoice_push_request(environment=environment, invoice=invoice)
        return Response(render_invoice_sync(invoice.pk, sync), status=status.HTTP_202_ACCEPTED)
