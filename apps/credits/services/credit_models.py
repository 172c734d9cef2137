"""Credit models (denominations and their rules) and the credits plans allocate per period."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.errors import Conflict, NotFound, ValidationFailed
from apps.core.tenancy import scoped
from apps.credits import errors
from apps.credits.amounts import quantize_credits
from apps.credits.models import CreditModel, PlanCreditAllocation, RolloverPolicy

from .checks import _constraint_of, _positive_credits

if TYPE_CHECKING:
    from apps.accounts.audit import Actor
    from apps.accounts.models import Environment


def _validate_rollover(policy: str, cap: Decimal | None) -> None:
    if policy not in RolloverPolicy.values:
        raise ValidationFailed(
            fields={"rolloverPolicy": [f"One of {', '.join(RolloverPolicy.values)}."]}
        )
    if policy == RolloverPolicy.CAPPED:
        if cap is None:
            raise ValidationFailed(fields={"rolloverCap": ["Required with the capped policy."]})
        if cap < 0 or quantize_credits(cap) != cap:
            raise ValidationFailed(
                fields={"rolloverCap": ["A non-negative number, at most 6 decimal places."]}
            )
    elif cap is not None:
        raise ValidationFailed(fields={"rolloverCap": ["Only with the capped policy."]})


@transaction.atomic
def credit_model_create(
    *,
    environment: Environment,
    name: str,
    denomination: str,
    description: str = "",
    hard_limit: bool = True,
    rollover_policy: str = RolloverPolicy.NONE,
    rollover_cap: Decimal | None = None,
    grant_expiry_months: int | None = None,
    metadata: dict[str, Any] | None = None,
    actor: Actor,
) -> CreditModel:
    """Define a denomination; one model per denomination per environment (409 otherwise)."""
    _validate_rollover(rollover_policy, rollover_cap)
    if grant_expiry_months is not None and not 1 <= grant_expiry_months <= 1200:
        raise ValidationFailed(fields={"grantExpiresMonths": ["Between 1 and 1200."]})
    now = timezone.now()
    model = CreditModel(
        environment=environment,
        name=name,
        denomination=denomination,
        description=description,
        hard_limit=hard_limit,
        rollover_policy=rollover_policy,
        rollover_cap=rollover_cap,
        grant_expiry_months=grant_expiry_months,
        metadata=metadata or {},
        created_at=now,
        updated_at=now,
    )
    try:
        with transaction.atomic():
            model.save(force_insert=True)
    except IntegrityError as exc:
        if _constraint_of(exc) == "credit_model_env_denom_unique":
            raise Conflict(
                f"A credit model for {denomination!r} exists already.",
                code=errors.DENOMINATION_EXISTS,
                fields={"denomination": ["Already defined."]},
            ) from None
        raise
    return model


@transaction.atomic
def credit_model_archive(*, credit_model: CreditModel, actor: Actor) -> CreditModel:
    """Stop offering a denomination: no new pools or allocations; existing pools keep working."""
    if credit_model.archived_at is None:
        credit_model.archived_at = timezone.now()
        credit_model.updated_at = credit_model.archived_at
        credit_model.save(update_fields=["archived_at", "updated_at"])
    return credit_model


@transaction.atomic
def plan_allocation_set(
    *,
    environment: Environment,
    plan_key: str,
    credit_model: CreditModel,
    credit_amount: Decimal,
    grant_expiry_months: int | None = None,
    priority: int | None = None,
    actor: Actor,
) -> PlanCreditAllocation:
    """The credits a plan grants per period in one denomination (creates or replaces).

    Takes effect from the next period granted; grants already made are not changed.
    """
    if credit_model.environment_id != environment.pk:
        raise NotFound("No such credit model.")
    if credit_model.archived_at is not None:
        raise ValidationFailed(fields={"creditModelId": ["This credit model is archived."]})
    _positive_credits(credit_amount, "creditAmount")
    if grant_expiry_months is not None and not 1 <= grant_expiry_months <= 1200:
        raise ValidationFailed(fields={"grantExpiresMonths": ["Between 1 and 1200."]})
    values = {
        "credit_amount": credit_amount,
        "grant_expiry_months": grant_expiry_months,
        "priority": priority,
    }
    updated = (
        scoped(PlanCreditAllocation, environment)
        .filter(plan_key=plan_key, credit_model=credit_model)
        .update(**values)
    )
    if not updated:
        try:
            with transaction.atomic():
                PlanCreditAllocation.objects.create(
                    environment=environment, plan_key=plan_key, credit_model=credit_model, **values
                )
        except IntegrityError:
            # A concurrent set created it first: ours replaces it.
            scoped(PlanCreditAllocation, environment).filter(
                plan_key=plan_key, credit_model=credit_model
            ).update(**values)
    return scoped(PlanCreditAllocation.objects.select_related("credit_model"), environment).get(
        plan_key=plan_key, credit_model=credit_model
    )


@transaction.atomic
def plan_allocation_remove(*, allocation: PlanCreditAllocation, actor: Actor) -> None:
    allocation.delete()
