"""Fields and lookups the credits API views share: lenient enumerations, credit amounts,
denominations, and the pool a manual operation targets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.utils import timezone
from rest_framework import serializers
from rest_framework.request import Request

from apps.apikeys.authentication import environment_of
from apps.core.api.fields import StrictCharField
from apps.core.errors import NotFound, ValidationFailed
from apps.credits import selectors as sel
from apps.credits import services as svc
from apps.credits.amounts import CREDIT_DECIMAL_PLACES, CREDIT_MAX_DIGITS
from apps.credits.models import (
    DENOMINATION_MAX_LENGTH,
    CreditConsumption,
    CreditPool,
    CreditTransaction,
)
from apps.customers.selectors import customer_get


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
