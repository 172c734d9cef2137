"""Credit pools: one per customer and denomination, created on first use with the credit
model's rules."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from django.db import transaction

from apps.core.errors import NotFound, ValidationFailed
from apps.core.tenancy import scoped
from apps.credits.models import CreditModel, CreditPool

if TYPE_CHECKING:
    from apps.accounts.models import Environment
    from apps.customers.models import Customer


def _pool_ensure_locked(
    *, environment_id: uuid.UUID, customer_id: uuid.UUID, credit_model: CreditModel
) -> CreditPool:
    """The customer's pool of the model's denomination, created if missing, row-locked."""
    CreditPool.objects.bulk_create(
        [
            CreditPool(
                environment_id=environment_id,
                customer_id=customer_id,
                credit_model=credit_model,
                denomination=credit_model.denomination,
                name=credit_model.name,
                hard_limit=credit_model.hard_limit,
                rollover_policy=credit_model.rollover_policy,
                rollover_cap=credit_model.rollover_cap,
                grant_expiry_months=credit_model.grant_expiry_months,
            )
        ],
        ignore_conflicts=True,
    )
    return scoped(CreditPool.objects.select_for_update(), environment_id).get(
        customer_id=customer_id, denomination=credit_model.denomination
    )


@transaction.atomic
def credit_pool_ensure(
    *, environment: Environment, customer: Customer, credit_model: CreditModel
) -> CreditPool:
    """One pool per customer and denomination: the existing one, or a new empty one.

    A new pool copies the model's rules (hard limit, rollover, grant expiry).
    """
    if customer.environment_id != environment.pk or credit_model.environment_id != environment.pk:
        raise NotFound("No such customer or credit model.")
    if credit_model.archived_at is not None:
        existing = (
            scoped(CreditPool, environment)
            .filter(customer=customer, denomination=credit_model.denomination)
            .first()
        )
        if existing is None:
            raise ValidationFailed(fields={"denomination": ["This credit model is archived."]})
        return existing
    return _pool_ensure_locked(
        environment_id=environment.pk, customer_id=customer.pk, credit_model=credit_model
    )
