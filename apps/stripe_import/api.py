"""Client API of the Stripe import: ``/api/v1/client/stripe/import/...``.

The reference API's paths are ``/api/v1/data/stripe/import/start`` and
``/import/status/{jobId}``; ours sit beside the Stripe connection's routes
(``/api/v1/client/stripe``, apps.stripe_sync). Starting needs ``billing.write``;
reads need ``billing.read``. Another tenant's job is a 404.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.audit import Actor
from apps.apikeys import scopes as S
from apps.apikeys.authentication import environment_of
from apps.apikeys.idempotency import APIView
from apps.core.api.pagination import decode_cursor, page_limit, paginate_newest_first
from apps.core.api.schema import PAGE_PARAMETERS, limit_parameter
from apps.core.errors import InvalidQuery, NotFound
from apps.customers.selectors import customer_get

from .rendering import render_job, render_subscription
from .selectors import import_job_get, import_jobs, imported_subscriptions
from .services import stripe_import_start

STATUSES = (
    "active",
    "past_due",
    "trialing",
    "canceled",
    "unpaid",
    "incomplete",
    "incomplete_expired",
    "paused",
)


# Built with type(): a Serializer subclass cannot declare a field named "errors" (it is
# a property of Serializer), and the job's JSON has one.
_JobDoc = type(
    "StripeImportJob",
    (serializers.Serializer,),
    {
        "jobId": serializers.UUIDField(),
        "status": serializers.ChoiceField(choices=["PENDING", "RUNNING", "COMPLETED", "FAILED"]),
        "phase": serializers.ChoiceField(
            choices=["QUEUED", "CUSTOMERS", "PRODUCTS", "PRICES", "SUBSCRIPTIONS", "DONE"]
        ),
        "percent": serializers.IntegerField(help_text="0-100, for a progress bar"),
        "total": serializers.IntegerField(help_text="Stripe objects read so far"),
        "processed": serializers.IntegerField(help_text="of which recorded"),
        "failed": serializers.IntegerField(help_text="of which refused (see errors)"),
        "counts": serializers.DictField(help_text="per object kind: read, created, matched, ..."),
        "errors": serializers.ListField(child=serializers.DictField()),
        "error": serializers.CharField(allow_null=True, help_text="why a failed job stopped"),
        "createdAt": serializers.DateTimeField(),
        "startedAt": serializers.DateTimeField(allow_null=True),
        "finishedAt": serializers.DateTimeField(allow_null=True),
        "updatedAt": serializers.DateTimeField(),
    },
)


class _JobPageDoc(serializers.Serializer):
    items = _JobDoc(many=True)


class _SubscriptionDoc(serializers.Serializer):
    stripeSubscriptionId = serializers.CharField()
    stripeCustomerId = serializers.CharField()
    customerReferenceId = serializers.CharField()
    status = serializers.CharField()
    currency = serializers.CharField()
    amount = serializers.DecimalField(
        max_digits=40, decimal_places=12, help_text="per interval, major units, exact"
    )
    interval = serializers.CharField(allow_null=True)
    intervalCount = serializers.IntegerField()
    items = serializers.ListField(child=serializers.DictField())
    startedAt = serializers.DateTimeField()
    trialEnd = serializers.DateTimeField(allow_null=True)
    endedAt = serializers.DateTimeField(allow_null=True)
    cancelAt = serializers.DateTimeField(allow_null=True)
    currentPeriodStart = serializers.DateTimeField()
    currentPeriodEnd = serializers.DateTimeField()
    revenueFrom = serializers.DateTimeField(allow_null=True)
    revenueUntil = serializers.DateTimeField(allow_null=True)
    countsAsRevenue = serializers.BooleanField()
    metadata = serializers.DictField()
    importedAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()


class _SubscriptionPageDoc(serializers.Serializer):
    items = _SubscriptionDoc(many=True)
    nextCursor = serializers.CharField(allow_null=True)
    hasMore = serializers.BooleanField()


class ImportStart(APIView):
    required_scopes = S.BILLING_WRITE

    @extend_schema(
        summary="Start a read-only import of the connected Stripe account",
        description=(
            "202 with the job. 409 `stripe_mode_not_import` unless the environment's "
            "stripeMode is IMPORT, `stripe_not_connected` without a Stripe key, "
            "`stripe_import_running` (with jobId) while an import runs."
        ),
        request=None,
        responses={202: _JobDoc},
    )
    def post(self, request: Request) -> Response:
        job = stripe_import_start(
            environment=environment_of(request), actor=Actor.from_request(request)
        )
        return Response(render_job(job), status=202)


class ImportStatus(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ}

    @extend_schema(summary="An import job's status and progress", request=None, responses=_JobDoc)
    def get(self, request: Request, job_id: str) -> Response:
        return Response(render_job(import_job_get(environment_of(request), job_id)))


class ImportJobList(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ}

    @extend_schema(
        summary="The environment's import jobs, newest first",
        request=None,
        parameters=[limit_parameter(default=20)],
        responses=_JobPageDoc,
    )
    def get(self, request: Request) -> Response:
        limit = page_limit(request, default=20)
        jobs = import_jobs(environment_of(request))[:limit]
        return Response({"items": [render_job(job) for job in jobs]})


class ImportedSubscriptionList(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ}

    @extend_schema(
        summary="Subscriptions imported from Stripe",
        request=None,
        parameters=[
            OpenApiParameter("customerReferenceId", str),
            OpenApiParameter("status", str, enum=[s.upper() for s in STATUSES]),
            *PAGE_PARAMETERS,
        ],
        responses=_SubscriptionPageDoc,
    )
    def get(self, request: Request) -> Response:
        environment = environment_of(request)
        status = request.query_params.get("status") or None
        if status is not None:
            status = status.lower()
            if status not in STATUSES:
                raise InvalidQuery(
                    fields={"status": [f"One of {', '.join(s.upper() for s in STATUSES)}."]}
                )
        # Every parameter is checked before any answer, the empty one for an unknown
        # customer included. Keyset pages on (startedAt, id), newest first; a bad id in a
        # cursor is a 400.
        page_limit(request)
        cursor = request.query_params.get("cursor")
        if cursor and not decode_cursor(cursor)[1].isdigit():
            raise InvalidQuery(fields={"cursor": ["Malformed cursor."]})
        customer_id = None
        reference = request.query_params.get("customerReferenceId")
        if reference:
            try:
                customer_id = customer_get(environment, reference).pk
            except NotFound:
                return Response({"items": [], "nextCursor": None, "hasMore": False})
        rows = imported_subscriptions(environment, customer_id=customer_id, status=status)
        return Response(
            paginate_newest_first(rows, request, render_subscription, time_field="started_at")
        )
