"""Response shapes of the credits API, for the OpenAPI schema only (the JSON itself comes
from :mod:`apps.credits.rendering`), and its path parameters."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers

from apps.core.api.schema import decimal
from apps.credits.models import GrantType, RolloverPolicy, TransactionType, WeightMatch


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
