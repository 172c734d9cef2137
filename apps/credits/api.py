"""Client API for credits, under ``/api/v1/client/``.

* ``credits/models``, ``credits/allocations``: denominations and what plans grant;
* ``credits/{ref}/pools[/{id}[/grants|/transactions]]``: a customer's pools (ck keys too);
* ``credits/grants``, ``credits/deductions``, ``credits/transactions/{id}/reverse``:
  manual ledger operations (``billing.write``);
* ``credits/weights``, ``credits/prices``: the two dials, published for a future instant;
* ``customers/{ref}/usage``: the customer's credit burndown.

Reads need ``billing.read`` (``usage.read`` for the usage report), writes ``billing.write``.
Enumerations are lowercase in responses; requests also accept the uppercase
spelling of the reference API (``PURCHASED``, ``PLAN_INCLUDED``, ``CAPPED``...).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Prefetch, QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.audit import Actor
from apps.apikeys import scopes as S
from apps.apikeys.authentication import environment_of
from apps.apikeys.idempotency import APIView
from apps.apikeys.permissions import ensure_customer_access
from apps.core.api.fields import MetadataField, StrictCharField
from apps.core.api.pagination import page_limit, paginate_newest_first
from apps.core.api.query import query_bool
from apps.core.api.schema import OPTIONAL_INSTANT_SCHEMA, PAGE_PARAMETERS, decimal, many, page
from apps.core.errors import InvalidQuery, NotFound, ValidationFailed
from apps.customers.models import Customer
from apps.customers.selectors import customer_get
from apps.features.selectors import feature_get

from . import rendering as R
from . import selectors as sel
from . import services as svc
from .amounts import (
    CREDIT_DECIMAL_PLACES,
    CREDIT_MAX_DIGITS,
    PRICE_DECIMAL_PLACES,
    PRICE_MAX_DIGITS,
    WEIGHT_DECIMAL_PLACES,
    WEIGHT_MAX,
    WEIGHT_MAX_DIGITS,
)
from .models import (
    DENOMINATION_MAX_LENGTH,
    CreditConsumption,
    CreditPool,
    CreditTransaction,
    GrantType,
    RolloverPolicy,
    TransactionType,
    WeightMatch,
)

# -- fields --------------------------------------------------------------------------------


class LooseChoiceField(serializers.ChoiceField):
    """A choice given in any case; ``aliases`` maps other spellings (reference API names)."""

    def __init__(
        self, choices: Any, aliases: Mapping[str, str] | None = None, **kwargs: Any
    ) -> None:
        self.aliases = aliases or {}
        super().__init__(choices, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, str):
            lowered = data.strip().lower()
            data = self.aliases.get(lowered, lowered)
        return super().to_internal_value(data)


def credits_field(**kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=CREDIT_MAX_DIGITS, decimal_places=CREDIT_DECIMAL_PLACES, **kwargs
    )


DENOMINATION_FIELD_KW: dict[str, Any] = {
    "max_length": DENOMINATION_MAX_LENGTH,
}
# Letters, digits, "_" and "-": it appears in URLs, catalogs and keys.
DENOMINATION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]*$"


def denomination_field(**kwargs: Any) -> serializers.RegexField:
    return serializers.RegexField(
        DENOMINATION_PATTERN,
        max_length=DENOMINATION_MAX_LENGTH,
        error_messages={"invalid": "Letters, digits, '_' and '-' only."},
        **kwargs,
    )


class PoolTargetMixin(serializers.Serializer):
    """A pool named by id, or by customer and denomination (created when missing)."""

    creditPoolId = serializers.UUIDField(required=False)
    customerReferenceId = StrictCharField(max_length=255, required=False, trim_whitespace=False)
    denomination = denomination_field(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "creditPoolId" not in attrs and not (
            "customerReferenceId" in attrs and "denomination" in attrs
        ):
            raise serializers.ValidationError(
                {"creditPoolId": ["Give creditPoolId, or customerReferenceId and denomination."]}
            )
        return attrs


def _target_pool(request: Request, data: dict[str, Any]) -> CreditPool:
    environment = environment_of(request)
    if "creditPoolId" in data:
        pool = sel.pool_get_by_id(environment, data["creditPoolId"])
        ref = data.get("customerReferenceId")
        if ref is not None and ref != pool.customer.reference_id:
            raise ValidationFailed(
                fields={"customerReferenceId": ["This pool belongs to another customer."]}
            )
        denomination = data.get("denomination")
        if denomination is not None and denomination != pool.denomination:
            raise ValidationFailed(fields={"denomination": ["This pool is of another one."]})
        return pool
    customer = customer_get(environment, data["customerReferenceId"])
    try:
        model = sel.credit_model_by_denomination(environment, data["denomination"])
    except NotFound:
        raise ValidationFailed(
            fields={"denomination": ["No credit model has this denomination."]}
        ) from None
    return svc.credit_pool_ensure(environment=environment, customer=customer, credit_model=model)


def _now() -> Any:
    return timezone.now()


def _with_allocations(queryset: QuerySet[CreditTransaction]) -> QuerySet[CreditTransaction]:
    return queryset.prefetch_related(
        Prefetch("consumptions", queryset=CreditConsumption.objects.order_by("id"))
    )


# -- response shapes (OpenAPI only; the JSON itself comes from rendering.py) ---------------


def _path(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, str, OpenApiParameter.PATH, description=description)


REFERENCE_PARAM = _path("reference_id", "The customer's reference id.")
POOL_PARAM = _path("pool_id", "The credit pool's id.")
MODEL_PARAM = _path("model_id", "The credit model's id.")

CREDIT_MODEL_OUT = inline_serializer(
    "CreditsModel",
    fields={
        "id": serializers.UUIDField(),
        "name": serializers.CharField(),
        "denomination": serializers.CharField(),
        "description": serializers.CharField(),
        "hardLimit": serializers.BooleanField(),
        "rolloverPolicy": serializers.ChoiceField(RolloverPolicy.values),
        "rolloverCap": decimal(allow_null=True),
        "grantExpiresMonths": serializers.IntegerField(allow_null=True),
        "metadata": serializers.JSONField(),
        "archivedAt": serializers.DateTimeField(allow_null=True),
        "createdAt": serializers.DateTimeField(),
        "modifiedAt": serializers.DateTimeField(),
    },
)

ALLOCATION_OUT = inline_serializer(
    "CreditsAllocation",
    fields={
        "id": serializers.UUIDField(),
        "planKey": serializers.CharField(),
        "creditModelId": serializers.UUIDField(),
        "creditModelName": serializers.CharField(),
        "denomination": serializers.CharField(),
        "creditAmount": decimal("Credits granted each period."),
        "grantExpiresMonths": serializers.IntegerField(allow_null=True),
        "hardLimit": serializers.BooleanField(),
        "priority": serializers.IntegerField(allow_null=True),
        "createdAt": serializers.DateTimeField(),
    },
)

POOL_OUT = inline_serializer(
    "CreditsPool",
    fields={
        "id": serializers.UUIDField(),
        "customerReferenceId": serializers.CharField(),
        "name": serializers.CharField(),
        "denomination": serializers.CharField(),
        "creditModelId": serializers.UUIDField(),
        "balance": decimal(),
        "totalGranted": decimal(),
        "totalConsumed": decimal(),
        "totalExpired": decimal(),
        "totalReversed": decimal(),
        "hardLimit": serializers.BooleanField(),
        "rolloverPolicy": serializers.ChoiceField(RolloverPolicy.values),
        "rolloverCap": decimal(allow_null=True),
        "grantExpiresMonths": serializers.IntegerField(allow_null=True),
        "status": serializers.ChoiceField(["active", "depleted"]),
        "currentPeriodStart": serializers.DateTimeField(allow_null=True),
        "currentPeriodEnd": serializers.DateTimeField(allow_null=True),
        "metadata": serializers.JSONField(),
        "createdAt": serializers.DateTimeField(),
        "modifiedAt": serializers.DateTimeField(),
    },
)


def _grant_fields() -> dict[str, serializers.Field]:
    return {
        "id": serializers.UUIDField(),
        "creditPoolId": serializers.UUIDField(),
        "grantType": serializers.ChoiceField(GrantType.values),
        "amount": decimal(),
        "remaining": decimal(),
        "priority": serializers.IntegerField(),
        "expiresAt": serializers.DateTimeField(allow_null=True),
        "grantedAt": serializers.DateTimeField(),
        "status": serializers.ChoiceField(["active", "spent", "expired", "closed"]),
        "idempotencyKey": serializers.CharField(allow_null=True),
        "unitPrice": decimal("Price per credit paid, for purchased credits.", allow_null=True),
        "currency": serializers.CharField(allow_null=True),
        "description": serializers.CharField(),
        "metadata": serializers.JSONField(),
        "closedAt": serializers.DateTimeField(allow_null=True),
        "createdAt": serializers.DateTimeField(),
    }


GRANT_OUT = inline_serializer("CreditsGrant", fields=_grant_fields())
GRANT_CREATED_OUT = inline_serializer(
    "CreditsGrantCreated",
    fields={
        **_grant_fields(),
        "balanceAfter": decimal("The pool's balance after the grant."),
    },
)

DEDUCTION_ONLY = "Deductions only."
TRANSACTION_OUT = inline_serializer(
    "CreditsTransaction",
    fields={
        "id": serializers.UUIDField(),
        "creditPoolId": serializers.UUIDField(),
        "sequence": serializers.IntegerField(help_text="1, 2, ... per pool."),
        "transactionType": serializers.ChoiceField(TransactionType.values),
        "amount": decimal("Signed: grants and reversals add, the rest take."),
        "balanceBefore": decimal(),
        "balanceAfter": decimal(),
        "creditGrantId": serializers.UUIDField(allow_null=True),
        "reversedTransactionId": serializers.UUIDField(allow_null=True),
        "idempotencyKey": serializers.CharField(allow_null=True),
        "eventRef": serializers.CharField(allow_null=True),
        "description": serializers.CharField(),
        "metadata": serializers.JSONField(),
        "createdBy": serializers.CharField(),
        "createdAt": serializers.DateTimeField(),
        "requestedCredits": decimal(DEDUCTION_ONLY, required=False, allow_null=True),
        "creditShortfall": decimal(f"{DEDUCTION_ONLY} What a hard limit refused.", required=False),
        "insufficientCredits": serializers.BooleanField(required=False, help_text=DEDUCTION_ONLY),
        "unbackedCredits": decimal(
            f"{DEDUCTION_ONLY} What no grant backed (soft limit).", required=False
        ),
        "featureId": serializers.UUIDField(
            required=False, allow_null=True, help_text=DEDUCTION_ONLY
        ),
        "model": serializers.CharField(required=False, allow_null=True, help_text=DEDUCTION_ONLY),
        "usageUnits": decimal(DEDUCTION_ONLY, required=False, allow_null=True),
        "creditsPerUnit": decimal(DEDUCTION_ONLY, required=False, allow_null=True),
        "weightId": serializers.UUIDField(
            required=False, allow_null=True, help_text=DEDUCTION_ONLY
        ),
        "weightMatch": serializers.ChoiceField(
            WeightMatch.values, required=False, allow_null=True, help_text=DEDUCTION_ONLY
        ),
        "allocations": serializers.ListField(
            child=serializers.DictField(),
            required=False,
            help_text=f"{DEDUCTION_ONLY} The grants drawn on: [{{creditGrantId, amount}}].",
        ),
    },
)

WEIGHT_OUT = inline_serializer(
    "CreditsWeight",
    fields={
        "id": serializers.UUIDField(),
        "featureId": serializers.UUIDField(),
        "featureKey": serializers.CharField(),
        "model": serializers.CharField(allow_null=True, help_text="null: every model."),
        "creditsPerUnit": decimal(),
        "effectiveFrom": serializers.DateTimeField(),
        "status": serializers.ChoiceField(["scheduled", "in_force"]),
        "batchId": serializers.UUIDField(),
        "createdBy": serializers.CharField(),
        "createdAt": serializers.DateTimeField(),
    },
)

PRICE_OUT = inline_serializer(
    "CreditsPrice",
    fields={
        "id": serializers.UUIDField(),
        "denomination": serializers.CharField(),
        "currency": serializers.CharField(),
        "pricePerCredit": decimal(),
        "effectiveFrom": serializers.DateTimeField(),
        "batchId": serializers.UUIDField(),
        "createdAt": serializers.DateTimeField(),
    },
)

POOL_USAGE_OUT = inline_serializer(
    "CreditsPoolUsage",
    fields={
        "poolId": serializers.UUIDField(),
        "denomination": serializers.CharField(),
        "balance": decimal(),
        "hardLimit": serializers.BooleanField(),
        "totalGranted": decimal(),
        "totalConsumed": decimal(),
        "averageDailyBurn": decimal("Net credits used a day over the last 30 days."),
        "burnWindowDays": decimal(),
        "projectedDepletionDate": serializers.DateField(allow_null=True),
        "pricePerCredit": decimal("From the price book; null without a price.", allow_null=True),
        "currency": serializers.CharField(allow_null=True),
    },
)


# -- credit models -------------------------------------------------------------------------


class CreditModelInput(serializers.Serializer):
    name = StrictCharField(max_length=150)
    denomination = denomination_field()
    description = StrictCharField(required=False, allow_blank=True, max_length=2000)
    hardLimit = serializers.BooleanField(required=False, default=True)
    rolloverPolicy = LooseChoiceField(
        RolloverPolicy.values, required=False, default=RolloverPolicy.NONE
    )
    rolloverCap = credits_field(required=False, allow_null=True, min_value=Decimal(0))
    grantExpiresMonths = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=1200
    )
    metadata = MetadataField(required=False)


class CreditModelListCreate(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ, "POST": S.BILLING_WRITE}

    @extend_schema(
        summary="List credit models (denominations)",
        operation_id="credit_models_list",
        request=None,
        parameters=PAGE_PARAMETERS,
        responses={200: page("CreditsModelPage", CREDIT_MODEL_OUT)},
    )
    def get(self, request: Request) -> Response:
        models_ = sel.credit_models_for(environment_of(request))
        return Response(paginate_newest_first(models_, request, R.render_credit_model))

    @extend_schema(
        summary="Define a credit model (409 denomination_exists)",
        request=CreditModelInput,
        responses={201: CREDIT_MODEL_OUT},
    )
    def post(self, request: Request) -> Response:
        body = CreditModelInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        model = svc.credit_model_create(
            environment=environment_of(request),
            name=data["name"],
            denomination=data["denomination"],
            description=data.get("description") or "",
            hard_limit=data["hardLimit"],
            rollover_policy=data["rolloverPolicy"],
            rollover_cap=data.get("rolloverCap"),
            grant_expiry_months=data.get("grantExpiresMonths"),
            metadata=data.get("metadata"),
            actor=Actor.from_request(request),
        )
        return Response(R.render_credit_model(model), status=status.HTTP_201_CREATED)


class CreditModelDetail(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ, "DELETE": S.BILLING_WRITE}

    @extend_schema(
        summary="One credit model",
        request=None,
        parameters=[MODEL_PARAM],
        responses={200: CREDIT_MODEL_OUT},
    )
    def get(self, request: Request, model_id: str) -> Response:
        return Response(
            R.render_credit_model(sel.credit_model_get(environment_of(request), model_id))
        )

    @extend_schema(
        summary="Archive a credit model (existing pools keep working)",
        request=None,
        parameters=[MODEL_PARAM],
        responses={200: CREDIT_MODEL_OUT},
    )
    def delete(self, request: Request, model_id: str) -> Response:
        model = sel.credit_model_get(environment_of(request), model_id)
        model = svc.credit_model_archive(credit_model=model, actor=Actor.from_request(request))
        return Response(R.render_credit_model(model))


# -- plan allocations ----------------------------------------------------------------------


class AllocationInput(serializers.Serializer):
    planKey = StrictCharField(max_length=128)
    creditModelId = serializers.UUIDField(required=False)
    denomination = denomination_field(required=False)
    creditAmount = credits_field(min_value=Decimal("0.000001"))
    grantExpiresMonths = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=1200
    )
    priority = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=1_000_000
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "creditModelId" not in attrs and "denomination" not in attrs:
            raise serializers.ValidationError(
                {"creditModelId": ["Give creditModelId or denomination."]}
            )
        return attrs


class AllocationListCreate(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ, "POST": S.BILLING_WRITE}

    @extend_schema(
        summary="Plan credit allocations (?planKey=)",
        request=None,
        parameters=[
            OpenApiParameter("planKey", str, description="Only this plan's allocations."),
            *PAGE_PARAMETERS,
        ],
        responses={200: page("CreditsAllocationPage", ALLOCATION_OUT)},
    )
    def get(self, request: Request) -> Response:
        plan_key = request.query_params.get("planKey")
        allocations = sel.allocations_for(environment_of(request), plan_key)
        return Response(paginate_newest_first(allocations, request, R.render_allocation))

    @extend_schema(
        summary="Set the credits a plan grants each period in one denomination",
        request=AllocationInput,
        responses={201: ALLOCATION_OUT},
    )
    def post(self, request: Request) -> Response:
        body = AllocationInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        environment = environment_of(request)
        try:
            if "creditModelId" in data:
                model = sel.credit_model_get(environment, data["creditModelId"])
            else:
                model = sel.credit_model_by_denomination(environment, data["denomination"])
        except NotFound:
            raise ValidationFailed(fields={"creditModelId": ["No such credit model."]}) from None
        allocation = svc.plan_allocation_set(
            environment=environment,
            plan_key=data["planKey"],
            credit_model=model,
            credit_amount=data["creditAmount"],
            grant_expiry_months=data.get("grantExpiresMonths"),
            priority=data.get("priority"),
            actor=Actor.from_request(request),
        )
        return Response(R.render_allocation(allocation), status=status.HTTP_201_CREATED)


class AllocationDetail(APIView):
    required_scopes = {"DELETE": S.BILLING_WRITE}

    @extend_schema(
        summary="Remove a plan credit allocation",
        request=None,
        parameters=[_path("allocation_id", "The allocation's id.")],
        responses={204: None},
    )
    def delete(self, request: Request, allocation_id: str) -> Response:
        allocation = sel.allocation_get(environment_of(request), allocation_id)
        svc.plan_allocation_remove(allocation=allocation, actor=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


# -- a customer's pools (ck keys may read their own) ---------------------------------------


class _CustomerPoolView(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ}
    customer_key_scope = S.CUSTOMER_READ

    def customer(self, request: Request, reference_id: str) -> Customer:
        ensure_customer_access(request, reference_id)
        return customer_get(environment_of(request), reference_id)


class PoolList(_CustomerPoolView):
    @extend_schema(
        summary="A customer's credit pools (one per denomination)",
        operation_id="credit_pools_list",
        request=None,
        parameters=[REFERENCE_PARAM],
        responses={200: page("CreditsPoolPage", POOL_OUT)},
    )
    def get(self, request: Request, reference_id: str) -> Response:
        customer = self.customer(request, reference_id)
        pools = sel.customer_pools(environment_of(request), customer)
        items = [R.render_pool(pool, customer.reference_id) for pool in pools]
        return Response({"items": items, "nextCursor": None, "hasMore": False})


class PoolDetail(_CustomerPoolView):
    @extend_schema(
        summary="One credit pool",
        request=None,
        parameters=[REFERENCE_PARAM, POOL_PARAM],
        responses={200: POOL_OUT},
    )
    def get(self, request: Request, reference_id: str, pool_id: str) -> Response:
        customer = self.customer(request, reference_id)
        pool = sel.pool_get(environment_of(request), customer, pool_id)
        return Response(R.render_pool(pool, customer.reference_id))


class PoolGrants(_CustomerPoolView):
    @extend_schema(
        summary="A pool's grants, newest first",
        request=None,
        parameters=[REFERENCE_PARAM, POOL_PARAM, *PAGE_PARAMETERS],
        responses={200: page("CreditsGrantPage", GRANT_OUT)},
    )
    def get(self, request: Request, reference_id: str, pool_id: str) -> Response:
        customer = self.customer(request, reference_id)
        pool = sel.pool_get(environment_of(request), customer, pool_id)
        now = _now()
        return Response(
            paginate_newest_first(
                sel.pool_grants(pool), request, lambda grant: R.render_grant(grant, now)
            )
        )


def _decode_sequence_cursor(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode()).decode()
        value = int(raw.removeprefix("seq:")) if raw.startswith("seq:") else None
    except (ValueError, UnicodeDecodeError, binascii.Error):
        value = None
    if value is None or value < 0:
        raise InvalidQuery(fields={"cursor": ["Malformed cursor."]})
    return value


def _encode_sequence_cursor(sequence: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{sequence}".encode()).decode().rstrip("=")


class PoolTransactions(_CustomerPoolView):
    @extend_schema(
        summary="A pool's ledger, newest entry first",
        request=None,
        parameters=[
            REFERENCE_PARAM,
            POOL_PARAM,
            OpenApiParameter("transactionType", str, enum=TransactionType.values),
            *PAGE_PARAMETERS,
        ],
        responses={200: page("CreditsTransactionPage", TRANSACTION_OUT)},
    )
    def get(self, request: Request, reference_id: str, pool_id: str) -> Response:
        customer = self.customer(request, reference_id)
        pool = sel.pool_get(environment_of(request), customer, pool_id)
        entries = sel.pool_transactions(pool)
        kind = request.query_params.get("transactionType")
        if kind:
            kind = kind.lower()
            if kind not in TransactionType.values:
                raise InvalidQuery(
                    fields={"transactionType": [f"One of {', '.join(TransactionType.values)}."]}
                )
            entries = entries.filter(transaction_type=kind)
        limit = page_limit(request)
        cursor = request.query_params.get("cursor")
        if cursor:
            entries = entries.filter(sequence__lt=_decode_sequence_cursor(cursor))
        rows = list(_with_allocations(entries.order_by("-sequence"))[: limit + 1])
        has_more = len(rows) > limit
        rows = rows[:limit]
        return Response(
            {
                "items": [R.render_transaction(row) for row in rows],
                "nextCursor": _encode_sequence_cursor(rows[-1].sequence) if has_more else None,
                "hasMore": has_more,
            }
        )


# -- manual ledger operations --------------------------------------------------------------

# Reference-API spellings accepted on input.
GRANT_TYPE_ALIASES: dict[str, str] = {"plan_included": GrantType.PLAN, "system": GrantType.MANUAL}
MANUAL_GRANT_TYPES = [value for value in GrantType.values if value != GrantType.ROLLOVER]


class GrantInput(PoolTargetMixin):
    amount = credits_field(min_value=Decimal("0.000001"))
    grantType = LooseChoiceField(
        MANUAL_GRANT_TYPES, aliases=GRANT_TYPE_ALIASES, required=False, default=GrantType.MANUAL
    )
    expiresAt = serializers.DateTimeField(required=False, allow_null=True)
    priority = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=1_000_000
    )
    description = StrictCharField(required=False, allow_blank=True, max_length=500)
    idempotencyKey = StrictCharField(required=False, allow_blank=True, max_length=255)
    metadata = MetadataField(required=False)
    unitPrice = serializers.DecimalField(
        max_digits=PRICE_MAX_DIGITS,
        decimal_places=PRICE_DECIMAL_PLACES,
        required=False,
        allow_null=True,
        min_value=Decimal(0),
    )
    currency = serializers.RegexField(r"^[A-Za-z]{3}$", required=False, allow_blank=True)


class GrantCreate(APIView):
    required_scopes = S.BILLING_WRITE

    @extend_schema(
        summary="Grant credits (idempotent by idempotencyKey)",
        description="201 with the new grant; 200 with the same grant on a replay.",
        request=GrantInput,
        responses={201: GRANT_CREATED_OUT, 200: GRANT_CREATED_OUT},
    )
    def post(self, request: Request) -> Response:
        body = GrantInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        with transaction.atomic():  # a pool created for a grant that is refused is not kept
            pool = _target_pool(request, data)
            grant = svc.credit_grant(
                pool=pool,
                amount=data["amount"],
                grant_type=data["grantType"],
                source_ref=data.get("idempotencyKey") or "",
                expires_at=data.get("expiresAt"),
                priority=data.get("priority"),
                actor=Actor.from_request(request),
                description=data.get("description") or "",
                metadata=data.get("metadata"),
                unit_price=data.get("unitPrice"),
                currency=data.get("currency") or "",
            )
            pool.refresh_from_db(fields=["balance"])  # still under the pool's lock
        created = getattr(grant, "created", True)
        return Response(
            {**R.render_grant(grant, _now()), "balanceAfter": pool.balance},
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class DeductionInput(PoolTargetMixin):
    amount = credits_field(min_value=Decimal("0.000001"))
    description = StrictCharField(required=False, allow_blank=True, max_length=500)
    idempotencyKey = StrictCharField(required=False, allow_blank=True, max_length=255)
    metadata = MetadataField(required=False)


class DeductionCreate(APIView):
    required_scopes = S.BILLING_WRITE

    @extend_schema(
        summary="Deduct credits by hand (409 insufficient_credits on a hard limit)",
        description="201 with the ledger entry; 200 with the same entry on a replay.",
        request=DeductionInput,
        responses={201: TRANSACTION_OUT, 200: TRANSACTION_OUT},
    )
    def post(self, request: Request) -> Response:
        body = DeductionInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        key = data.get("idempotencyKey") or ""
        if key.startswith("event:"):
            raise ValidationFailed(fields={"idempotencyKey": ["The prefix 'event:' is reserved."]})
        with transaction.atomic():
            pool = _target_pool(request, data)
            before = pool.last_sequence
            entry = svc.credits_deduct(
                pool=pool,
                amount=data["amount"],
                actor=Actor.from_request(request),
                description=data.get("description") or "",
                idempotency_key=key,
                metadata=data.get("metadata"),
            )
        entry = _with_allocations(CreditTransaction.objects.filter(pk=entry.pk)).get()
        replayed = entry.sequence <= before
        return Response(
            R.render_transaction(entry),
            status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED,
        )


class ReverseInput(serializers.Serializer):
    description = StrictCharField(required=False, allow_blank=True, max_length=500)


class TransactionReverse(APIView):
    required_scopes = S.BILLING_WRITE

    @extend_schema(
        summary="Reverse a deduction (credits go back to its grants)",
        description="409 already_reversed / not_reversible.",
        request=ReverseInput,
        parameters=[_path("transaction_id", "The deduction's ledger entry id.")],
        responses={201: TRANSACTION_OUT},
    )
    def post(self, request: Request, transaction_id: str) -> Response:
        body = ReverseInput(data=request.data or {})
        body.is_valid(raise_exception=True)
        entry = svc.credits_reverse(
            environment=environment_of(request),
            transaction_id=transaction_id,
            actor=Actor.from_request(request),
            description=body.validated_data.get("description") or "",
        )
        assert entry is not None  # by transaction id: an entry or an error
        return Response(R.render_transaction(entry), status=status.HTTP_201_CREATED)


# -- weights and prices --------------------------------------------------------------------


class WeightEntryInput(serializers.Serializer):
    featureKey = StrictCharField(max_length=128, required=False)
    featureId = serializers.UUIDField(required=False)
    model = StrictCharField(max_length=255, required=False, allow_blank=True, allow_null=True)
    creditsPerUnit = serializers.DecimalField(
        max_digits=WEIGHT_MAX_DIGITS,
        decimal_places=WEIGHT_DECIMAL_PLACES,
        min_value=Decimal("0.000001"),
        max_value=WEIGHT_MAX,
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "featureKey" not in attrs and "featureId" not in attrs:
            raise serializers.ValidationError({"featureKey": ["Give featureKey or featureId."]})
        return attrs


class WeightPublishInput(serializers.Serializer):
    effectiveFrom = serializers.DateTimeField()
    entries = WeightEntryInput(many=True, allow_empty=False)  # at most PUBLISH_MAX_ENTRIES


class WeightList(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ}

    @extend_schema(
        summary="Weights in force (?at=), or those scheduled (?scheduled=true)",
        request=None,
        parameters=[
            OpenApiParameter(
                "at",
                OPTIONAL_INSTANT_SCHEMA,
                description="The weights in force then (default now).",
            ),
            OpenApiParameter("scheduled", bool, description="Those not yet in force instead."),
        ],
        responses={200: page("CreditsWeightPage", WEIGHT_OUT)},
    )
    def get(self, request: Request) -> Response:
        environment = environment_of(request)
        now = _now()
        at = _instant_param(request, "at") or now  # checked even when not used
        if query_bool(request.query_params, "scheduled"):
            rows = sel.weights_scheduled(environment, now)
        else:
            rows = sel.weights_in_force(environment, at)
        items = [R.render_weight(row, now) for row in rows]
        return Response({"items": items, "nextCursor": None, "hasMore": False})


def _instant_param(request: Request, name: str) -> Any:
    raw = request.query_params.get(name)
    if not raw:
        return None
    field = serializers.DateTimeField()
    try:
        return field.to_internal_value(raw)
    except serializers.ValidationError:
        raise InvalidQuery(fields={name: ["An ISO 8601 date and time."]}) from None


class WeightPublish(APIView):
    required_scopes = S.BILLING_WRITE

    @extend_schema(
        summary="Publish weights for a future instant (never changed once in force)",
        request=WeightPublishInput,
        responses={
            201: inline_serializer(
                "CreditsWeightsPublished",
                fields={
                    "effectiveFrom": serializers.DateTimeField(),
                    "items": many(WEIGHT_OUT),
                },
            )
        },
    )
    def post(self, request: Request) -> Response:
        body = WeightPublishInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        environment = environment_of(request)
        entries = []
        for index, entry in enumerate(data["entries"]):
            try:
                if "featureId" in entry:
                    feature = sel.feature_by_id(environment, entry["featureId"])
                else:
                    feature = feature_get(environment, entry["featureKey"])
            except NotFound:
                raise ValidationFailed(
                    fields={f"entries.{index}.featureKey": ["No such feature."]}
                ) from None
            entries.append(
                svc.WeightEntry(feature, entry.get("model") or "", entry["creditsPerUnit"])
            )
        rows = svc.credit_weights_publish(
            environment=environment,
            effective_from=data["effectiveFrom"],
            entries=entries,
            actor=Actor.from_request(request),
        )
        now = _now()
        features = {entry.feature.pk: entry.feature for entry in entries}
        for row in rows:
            row.feature = features.get(row.feature_id) or row.feature
        return Response(
            {
                "effectiveFrom": data["effectiveFrom"],
                "items": [R.render_weight(row, now) for row in rows],
            },
            status=status.HTTP_201_CREATED,
        )


class WeightDetail(APIView):
    required_scopes = {"DELETE": S.BILLING_WRITE}

    @extend_schema(
        summary="Withdraw a weight not yet in force (409 weight_in_force)",
        request=None,
        parameters=[_path("weight_id", "The weight's id.")],
        responses={204: None},
    )
    def delete(self, request: Request, weight_id: str) -> Response:
        weight = sel.weight_get(environment_of(request), weight_id)
        svc.credit_weight_withdraw(weight=weight, actor=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class PriceEntryInput(serializers.Serializer):
    denomination = denomination_field()
    currency = serializers.RegexField(r"^[A-Za-z]{3}$", required=False, default="USD")
    pricePerCredit = serializers.DecimalField(
        max_digits=PRICE_MAX_DIGITS,
        decimal_places=PRICE_DECIMAL_PLACES,
        min_value=Decimal("0.000000000001"),
    )


class PricePublishInput(serializers.Serializer):
    effectiveFrom = serializers.DateTimeField()
    entries = PriceEntryInput(many=True, allow_empty=False)  # at most PUBLISH_MAX_ENTRIES


class PriceList(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ}
    customer_key_scope = S.CUSTOMER_READ

    @extend_schema(
        summary="The price book: the price per credit in force now",
        request=None,
        responses={200: page("CreditsPricePage", PRICE_OUT)},
    )
    def get(self, request: Request) -> Response:
        rows = sel.prices_in_force(environment_of(request), _now())
        items = [R.render_price(row) for row in rows]
        return Response({"items": items, "nextCursor": None, "hasMore": False})


class PricePublish(APIView):
    required_scopes = S.BILLING_WRITE

    @extend_schema(
        summary="Publish prices per credit for a future instant",
        request=PricePublishInput,
        responses={
            201: inline_serializer(
                "CreditsPricesPublished",
                fields={
                    "effectiveFrom": serializers.DateTimeField(),
                    "items": many(PRICE_OUT),
                },
            )
        },
    )
    def post(self, request: Request) -> Response:
        body = PricePublishInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        rows = svc.credit_prices_publish(
            environment=environment_of(request),
            effective_from=data["effectiveFrom"],
            entries=[
                svc.PriceEntry(entry["denomination"], entry["currency"], entry["pricePerCredit"])
                for entry in data["entries"]
            ],
            actor=Actor.from_request(request),
        )
        return Response(
            {"effectiveFrom": data["effectiveFrom"], "items": [R.render_price(r) for r in rows]},
            status=status.HTTP_201_CREATED,
        )


# -- usage ---------------------------------------------------------------------------------


class CustomerUsage(APIView):
    """The usage report: per subscription in force, each feature's used / limit /
    remaining / projected end of period (``apps.entitlements``), and the credit pools."""

    required_scopes = {"GET": S.USAGE_READ, "HEAD": S.USAGE_READ}
    customer_key_scope = S.CUSTOMER_READ

    @extend_schema(
        summary="A customer's usage report: features per subscription, credit burndown per pool",
        request=None,
        parameters=[REFERENCE_PARAM],
        responses={
            200: inline_serializer(
                "CreditsCustomerUsage",
                fields={
                    "customerReferenceId": serializers.CharField(),
                    "asOf": serializers.DateTimeField(),
                    "subscriptions": serializers.ListField(
                        child=serializers.DictField(),
                        help_text=(
                            "Per subscription in force: {subscriptionId, planKey, status, "
                            "currentPeriodStart, currentPeriodEnd, features: [{featureKey, "
                            "allowed, reason?, used, limit, remaining, held, unlimited, "
                            "windowStart, resetsAt, projectedEndOfPeriod, wouldExceedLimit}]} "
                            "(docs/entitlements.md)."
                        ),
                    ),
                    "creditPools": many(POOL_USAGE_OUT),
                },
            )
        },
    )
    def get(self, request: Request, reference_id: str) -> Response:
        ensure_customer_access(request, reference_id)
        environment = environment_of(request)
        customer = customer_get(environment, reference_id)
        now = _now()
        usage = sel.customer_credit_usage(environment, customer, now=now)
        from apps.entitlements.rendering import render_usage_report
        from apps.entitlements.selectors import feature_usage

        features = feature_usage(environment, customer.reference_id, now=now)
        return Response(
            {
                "customerReferenceId": customer.reference_id,
                "asOf": now,
                "subscriptions": render_usage_report(features, now),
                "creditPools": [R.render_pool_usage(row) for row in usage],
            }
        )
