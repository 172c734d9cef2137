"""Manual ledger operations (``billing.write``): ``credits/grants``, ``credits/deductions``,
``credits/transactions/{id}/reverse``."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.audit import Actor
from apps.apikeys import scopes as S
from apps.apikeys.authentication import environment_of
from apps.apikeys.idempotency import APIView
from apps.core.api.fields import MetadataField, StrictCharField
from apps.core.errors import ValidationFailed
from apps.credits import rendering as R
from apps.credits import services as svc
from apps.credits.amounts import PRICE_DECIMAL_PLACES, PRICE_MAX_DIGITS
from apps.credits.models import CreditTransaction, GrantType

from .inputs import (
    LooseChoiceField,
    PoolTargetMixin,
    _now,
    _target_pool,
    _with_allocations,
    credits_field,
)
from .schema import GRANT_CREATED_OUT, TRANSACTION_OUT, _path

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
