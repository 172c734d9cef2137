"""Client API for invoices: ``/api/v1/client/billing/...`` (the reference API's paths).

Reads need ``billing.read`` (a ``ck_`` key with ``read`` may read its own
customer's invoices); mark-paid, void and settings need ``billing.write``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.audit import Actor
from apps.apikeys import scopes as S
from apps.apikeys.authentication import environment_of
from apps.apikeys.idempotency import APIView
from apps.apikeys.permissions import ensure_customer_access, pinned_customer_reference
from apps.core.api.fields import StrictCharField
from apps.core.api.pagination import decode_cursor, encode_cursor, page_limit
from apps.core.api.schema import (
    INSTANT_SCHEMA,
    OPTIONAL_UUID_SCHEMA,
    PAGE_PARAMETERS,
    decimal,
    many,
    page,
)
from apps.core.errors import InvalidQuery, NotFound, ValidationFailed
from apps.customers.selectors import customer_get
from apps.subscriptions.selectors import subscription_get, subscriptions_in_force

from .attribution import revenue_attribution, summarize
from .models import Invoice, InvoiceLine, StripeMode
from .rendering import render_invoice, render_upcoming
from .selectors import invoice_get, invoices_search
from .services import (
    MAX_CHARGES,
    Charge,
    billing_settings_get,
    billing_settings_update,
    invoice_issue_charges,
    invoice_mark_paid,
    invoice_void,
)
from .upcoming import Upcoming, upcoming_invoices

EMPTY: dict[str, Any] = {"items": [], "nextCursor": None, "hasMore": False}


def _status_filter(request: Request) -> str | None:
    raw = request.query_params.get("status")
    if not raw:
        return None
    value = raw.lower()
    if value not in Invoice.Status.values:
        choices = ", ".join(s.upper() for s in Invoice.Status.values)
        raise InvalidQuery(fields={"status": [f"One of {choices}."]})
    return value


def _subscription_filter(request: Request) -> str | None:
    raw = request.query_params.get("subscriptionId")
    if not raw:
        return None
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise InvalidQuery(fields={"subscriptionId": ["Not a subscription id."]}) from None


def _newest_first(invoices: QuerySet[Invoice], request: Request) -> dict[str, Any]:
    """Keyset pages in issue order, newest first: invoice numbers are a total order per
    environment (invoices of one run share their creation instant)."""
    limit = page_limit(request)
    cursor = request.query_params.get("cursor")
    invoices = invoices.order_by("-sequence")
    if cursor:
        sequence, _ = decode_cursor(cursor)
        if not sequence.isdigit():
            raise InvalidQuery(fields={"cursor": ["Malformed cursor."]})
        invoices = invoices.filter(sequence__lt=int(sequence))
    rows = list(invoices[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor([rows[-1].sequence, rows[-1].pk]) if has_more else None
    return {
        "items": [render_invoice(row) for row in rows],
        "nextCursor": next_cursor,
        "hasMore": has_more,
    }


def _invoice(request: Request, invoice_id: str) -> Invoice:
    invoice = invoice_get(environment_of(request), invoice_id)
    pinned = pinned_customer_reference(request)
    if pinned is not None and invoice.customer.reference_id != pinned:
        raise NotFound("No such invoice.")
    return invoice


# -- schema (what the views return; see rendering.py) -------------------------------------


_LINE = inline_serializer(
    "BillingInvoiceLine",
    fields={
        "id": serializers.IntegerField(),
        "kind": serializers.ChoiceField(choices=[k.upper() for k in InvoiceLine.Kind.values]),
        "description": serializers.CharField(),
        "chargeAmount": decimal(help_text="The rounded amount in major units"),
        "amountMinor": serializers.IntegerField(help_text="The same in integer minor units"),
        "exactAmount": decimal(help_text="The exact amount before the line's one rounding"),
        "quantity": decimal(allow_null=True),
        "featureKey": serializers.CharField(allow_null=True),
        "planId": serializers.UUIDField(allow_null=True),
        "periodStart": serializers.DateTimeField(help_text="Start of the service period"),
        "periodEnd": serializers.DateTimeField(),
        "details": serializers.DictField(),
    },
)
_INVOICE = inline_serializer(
    "BillingInvoice",
    fields={
        "id": serializers.UUIDField(),
        "number": serializers.CharField(help_text="INV-000123 (live) or INV-TEST-000123 (test)"),
        "subscription": serializers.UUIDField(help_text="The subscription's id"),
        "customerReferenceId": serializers.CharField(),
        "type": serializers.CharField(
            help_text="REGULAR, IN_ADVANCE_INITIAL, ADJUSTMENT or CREDIT"
        ),
        "reason": serializers.ChoiceField(choices=Invoice.Reason.values),
        "status": serializers.ChoiceField(choices=[s.upper() for s in Invoice.Status.values]),
        "amount": decimal(help_text="The total in major units"),
        "amountMinor": serializers.IntegerField(help_text="The total in integer minor units"),
        "currency": serializers.CharField(),
        "invoicePeriodStart": serializers.DateTimeField(),
        "invoicePeriodEnd": serializers.DateTimeField(),
        "issuedAt": serializers.DateTimeField(),
        "dueDate": serializers.DateTimeField(),
        "gracePeriodDays": serializers.IntegerField(),
        "paidAt": serializers.DateTimeField(allow_null=True),
        "pastDueAt": serializers.DateTimeField(allow_null=True),
        "voidedAt": serializers.DateTimeField(allow_null=True),
        "paymentReference": serializers.CharField(allow_null=True),
        "creditedInvoiceId": serializers.UUIDField(
            allow_null=True, help_text="A credit note: the invoice it gives back part of"
        ),
        "planChangeId": serializers.UUIDField(allow_null=True),
        "htmlUrl": serializers.CharField(help_text="Path of the printable page"),
        "metadata": serializers.DictField(),
        "items": many(_LINE),
        "createdAt": serializers.DateTimeField(),
        "modifiedAt": serializers.DateTimeField(),
    },
)


_INVOICE_ID = OpenApiParameter("invoice_id", str, OpenApiParameter.PATH)
_REFERENCE_ID = OpenApiParameter(
    "reference_id", str, OpenApiParameter.PATH, description="The customer's reference id"
)


class _ChargeInput(serializers.Serializer):
    description = StrictCharField(max_length=255)
    amount = serializers.DecimalField(
        max_digits=20, decimal_places=12, help_text="In the plan's currency, > 0"
    )


class IssueInput(serializers.Serializer):
    subscriptionId = serializers.UUIDField()
    items = _ChargeInput(many=True, help_text=f"1 to {MAX_CHARGES} one-off charges")


class InvoiceList(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ, "POST": S.BILLING_WRITE}

    @extend_schema(
        summary="Issue an invoice now: one-off charges on a subscription in force",
        operation_id="billing_invoices_issue",
        request=IssueInput,
        responses={201: _INVOICE},
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationFailed(fields={"_body": ["Expected a JSON object."]})
        body = IssueInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        environment = environment_of(request)
        subscription = subscription_get(environment, str(data["subscriptionId"]))
        invoice = invoice_issue_charges(
            subscription=subscription,
            charges=[Charge(item["description"], item["amount"]) for item in data["items"]],
            actor=Actor.from_request(request),
        )
        return Response(render_invoice(invoice_get(environment, str(invoice.pk))), status=201)

    @extend_schema(
        summary="The environment's invoices, newest first",
        operation_id="billing_invoices_list",
        request=None,
        responses={200: page("BillingInvoicePage", _INVOICE)},
        parameters=[
            OpenApiParameter("customerReferenceId", str),
            OpenApiParameter("subscriptionId", OPTIONAL_UUID_SCHEMA),
            OpenApiParameter("status", str, enum=[s.upper() for s in Invoice.Status.values]),
            *PAGE_PARAMETERS,
        ],
    )
    def get(self, request: Request) -> Response:
        environment = environment_of(request)
        status, subscription_id = _status_filter(request), _subscription_filter(request)
        customer = None
        reference = request.query_params.get("customerReferenceId")
        if reference:
            try:
                customer = customer_get(environment, reference)
            except NotFound:
                return Response(EMPTY)
        invoices = invoices_search(
            environment, customer=customer, status=status, subscription_id=subscription_id
        )
        return Response(_newest_first(invoices, request))


class _CustomerReadable(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ}
    customer_key_scope = S.CUSTOMER_READ


class CustomerInvoices(_CustomerReadable):
    @extend_schema(
        summary="A customer's invoices with their items, newest first",
        operation_id="billing_customer_invoices_list",
        request=None,
        responses={200: page("BillingCustomerInvoicePage", _INVOICE)},
        parameters=[
            _REFERENCE_ID,
            OpenApiParameter("status", str, enum=[s.upper() for s in Invoice.Status.values]),
            *PAGE_PARAMETERS,
        ],
    )
    def get(self, request: Request, reference_id: str) -> Response:
        ensure_customer_access(request, reference_id)
        environment = environment_of(request)
        status = _status_filter(request)
        customer = customer_get(environment, reference_id)
        invoices = invoices_search(environment, customer=customer, status=status)
        return Response(_newest_first(invoices, request))


class CustomerInvoiceDetail(_CustomerReadable):
    @extend_schema(
        summary="One invoice of a customer",
        request=None,
        responses={200: _INVOICE},
        parameters=[_REFERENCE_ID, _INVOICE_ID],
    )
    def get(self, request: Request, reference_id: str, invoice_id: str) -> Response:
        ensure_customer_access(request, reference_id)
        invoice = _invoice(request, invoice_id)
        if invoice.customer.reference_id != reference_id:
            raise NotFound("No such invoice.")
        return Response(render_invoice(invoice))


_UPCOMING_LINE = inline_serializer(
    "BillingUpcomingLine",
    fields={
        "kind": serializers.ChoiceField(choices=[k.upper() for k in InvoiceLine.Kind.values]),
        "description": serializers.CharField(),
        "chargeAmount": decimal(help_text="The rounded amount in major units"),
        "amountMinor": serializers.IntegerField(),
        "exactAmount": decimal(help_text="The exact amount before the line's one rounding"),
        "quantity": decimal(allow_null=True),
        "featureId": serializers.UUIDField(allow_null=True),
        "planId": serializers.UUIDField(allow_null=True),
        "periodStart": serializers.DateTimeField(),
        "periodEnd": serializers.DateTimeField(),
        "details": serializers.DictField(),
    },
)
_UPCOMING = inline_serializer(
    "BillingUpcoming",
    fields={
        "customerReferenceId": serializers.CharField(),
        "issuedAt": serializers.DateTimeField(
            allow_null=True, help_text="When the billing cycle issues them: the period's end"
        ),
        "invoices": many(
            inline_serializer(
                "BillingUpcomingInvoice",
                fields={
                    "subscription": serializers.UUIDField(),
                    "type": serializers.CharField(),
                    "reason": serializers.ChoiceField(choices=Invoice.Reason.values),
                    "currency": serializers.CharField(),
                    "invoicePeriodStart": serializers.DateTimeField(),
                    "invoicePeriodEnd": serializers.DateTimeField(),
                    "amount": decimal(help_text="The total in major units"),
                    "amountMinor": serializers.IntegerField(),
                    "items": many(_UPCOMING_LINE),
                },
            )
        ),
    },
)


class CustomerUpcomingInvoice(_CustomerReadable):
    @extend_schema(
        summary="What the customer's subscriptions will be invoiced at the end of the period",
        description=(
            "Drafted by the billing cycle's own code from the usage recorded so far, and "
            "written nowhere: with no more usage, the invoices the period then produces "
            "are these, to the cent. One entry per subscription in force (none without)."
        ),
        request=None,
        responses={200: _UPCOMING},
        parameters=[_REFERENCE_ID],
    )
    def get(self, request: Request, reference_id: str) -> Response:
        ensure_customer_access(request, reference_id)
        environment = environment_of(request)
        customer = customer_get(environment, reference_id)
        now = timezone.now()
        at: dt.datetime | None = None
        invoices = []
        for subscription in subscriptions_in_force(environment, customer):
            upcoming = upcoming_invoices(subscription, now=now)
            at = upcoming.at if at is None or (upcoming.at and upcoming.at < at) else at
            invoices.extend(upcoming.invoices)
        return Response(render_upcoming(Upcoming(at=at, invoices=invoices), reference_id))


class MarkPaidInput(serializers.Serializer):
    refuses_unknown_fields = True  # validate() below; the schema says so
    paidAt = serializers.DateTimeField(required=False)
    paymentReference = StrictCharField(max_length=255, required=False, allow_blank=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return attrs


class InvoiceMarkPaid(APIView):
    required_scopes = S.BILLING_WRITE

    @extend_schema(
        summary="Record an out-of-band payment: the invoice becomes PAID",
        request=MarkPaidInput,
        responses={200: _INVOICE},
        parameters=[_INVOICE_ID],
    )
    def post(self, request: Request, invoice_id: str) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationFailed(fields={"_body": ["Expected a JSON object."]})
        body = MarkPaidInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        invoice = _invoice(request, invoice_id)
        invoice_mark_paid(
            invoice=invoice,
            paid_at=data.get("paidAt"),
            reference=data.get("paymentReference", ""),
            actor=Actor.from_request(request),
        )
        return Response(render_invoice(invoice_get(environment_of(request), invoice_id)))


class VoidInput(serializers.Serializer):
    reason = StrictCharField(max_length=255, required=False, allow_blank=True)


class InvoiceVoid(APIView):
    required_scopes = S.BILLING_WRITE

    @extend_schema(
        summary="Void an unpaid invoice",
        request=VoidInput,
        responses={200: _INVOICE},
        parameters=[_INVOICE_ID],
    )
    def post(self, request: Request, invoice_id: str) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationFailed(fields={"_body": ["Expected a JSON object."]})
        body = VoidInput(data=request.data)
        body.is_valid(raise_exception=True)
        invoice = _invoice(request, invoice_id)
        invoice_void(
            invoice=invoice,
            reason=body.validated_data.get("reason", ""),
            actor=Actor.from_request(request),
        )
        return Response(render_invoice(invoice_get(environment_of(request), invoice_id)))


class SettingsInput(serializers.Serializer):
    paymentTermsDays = serializers.IntegerField(min_value=0, max_value=365, required=False)
    gracePeriodDays = serializers.IntegerField(
        min_value=0, max_value=365, required=False, allow_null=True
    )
    stripeMode = serializers.ChoiceField(
        choices=[m.upper() for m in StripeMode.values], required=False
    )


def _render_settings(environment: Any) -> dict[str, Any]:
    settings = billing_settings_get(environment)
    return {
        "paymentTermsDays": settings.payment_terms_days,
        "gracePeriodDays": settings.grace_period_days,
        "stripeMode": settings.stripe_mode.upper(),
    }


_SETTINGS = inline_serializer(
    "BillingSettings",
    fields={
        "paymentTermsDays": serializers.IntegerField(),
        "gracePeriodDays": serializers.IntegerField(
            allow_null=True, help_text="null: each subscription's own"
        ),
        "stripeMode": serializers.CharField(
            help_text="NONE, PASS_THROUGH, STRIPE_DRIVEN or IMPORT"
        ),
    },
)


class BillingSettingsView(APIView):
    required_scopes = {
        "GET": S.BILLING_READ,
        "HEAD": S.BILLING_READ,
        "PATCH": S.BILLING_WRITE,
    }

    @extend_schema(
        summary="The environment's billing settings", request=None, responses={200: _SETTINGS}
    )
    def get(self, request: Request) -> Response:
        return Response(_render_settings(environment_of(request)))

    @extend_schema(
        summary="Change payment terms, grace period or Stripe mode",
        request=SettingsInput,
        responses={200: _SETTINGS},
    )
    def patch(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationFailed(fields={"_body": ["Expected a JSON object."]})
        body = SettingsInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        environment = environment_of(request)
        billing_settings_update(
            environment=environment,
            payment_terms_days=data.get("paymentTermsDays"),
            grace_period_days=data.get("gracePeriodDays", "unchanged"),
            stripe_mode=data["stripeMode"].lower() if "stripeMode" in data else None,
            actor=Actor.from_request(request),
        )
        return Response(_render_settings(environment))


MAX_WINDOW = dt.timedelta(days=366)


def _instant(request: Request, name: str, problems: dict[str, list[str]]) -> dt.datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        problems[name] = ["Required (ISO 8601)."]
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        problems[name] = ["Not an ISO 8601 date or time."]
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


_REVENUE_ITEM = inline_serializer(
    "BillingRevenueItem",
    fields={
        "customerReferenceId": serializers.CharField(),
        "featureKey": serializers.CharField(
            allow_null=True, help_text="null: revenue no usage could carry"
        ),
        "currency": serializers.CharField(),
        "revenue": decimal(help_text="usageRevenue + baseRevenue"),
        "usageRevenue": decimal(),
        "baseRevenue": decimal(),
        "costUsd": decimal(),
        "margin": decimal(allow_null=True, help_text="revenue - costUsd; USD only, else null"),
    },
)
_REVENUE = inline_serializer(
    "BillingRevenue",
    fields={
        "from": serializers.DateTimeField(),
        "to": serializers.DateTimeField(),
        "items": many(_REVENUE_ITEM),
        "totals": serializers.DictField(
            child=serializers.DictField(),
            help_text="Per currency: {revenue, usageRevenue, baseRevenue} (decimal strings)",
        ),
    },
)


class RevenueAttribution(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ}

    @extend_schema(
        summary="Invoice revenue per customer and feature in a window, beside its cost",
        request=None,
        responses={200: _REVENUE},
        parameters=[
            OpenApiParameter(
                "from", INSTANT_SCHEMA, required=True, description="ISO 8601 (UTC when no offset)"
            ),
            OpenApiParameter(
                "to",
                INSTANT_SCHEMA,
                required=True,
                description="ISO 8601, after from, at most 366 days",
            ),
        ],
    )
    def get(self, request: Request) -> Response:
        problems: dict[str, list[str]] = {}
        start, end = _instant(request, "from", problems), _instant(request, "to", problems)
        if start and end and not start < end:
            problems["to"] = ["Must be after from."]
        elif start and end and end - start > MAX_WINDOW:
            problems["to"] = ["At most 366 days after from."]
        if problems or start is None or end is None:
            raise InvalidQuery(fields=problems)
        items = revenue_attribution(environment_of(request), start=start, end=end)
        return Response(
            {
                "from": start,
                "to": end,
                "items": [
                    {
                        "customerReferenceId": item.customer_reference_id,
                        "featureKey": item.feature_key,
                        "currency": item.currency,
                        "revenue": item.revenue,
                        "usageRevenue": item.usage_revenue,
                        "baseRevenue": item.base_revenue,
                        "costUsd": item.cost_usd,
                        "margin": item.margin,
                    }
                    for item in items
                ],
                "totals": summarize(items),
            }
        )
