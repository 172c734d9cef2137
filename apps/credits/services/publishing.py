"""Publishing credit weights (credits per unit of a feature or model) and the price book
(the price of a credit), ahead of time: values in force are never changed."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.errors import Conflict, ValidationFailed
from apps.core.tenancy import scoped
from apps.credits import errors
from apps.credits import weights as weight_cache
from apps.credits.models import CreditModel, CreditPrice, CreditWeight
from apps.credits.weights import MIN_LEAD

from .audit import actor_label

if TYPE_CHECKING:
    from apps.accounts.audit import Actor
    from apps.accounts.models import Environment
    from apps.features.models import Feature

PUBLISH_MAX_ENTRIES = 1000


@dataclass(frozen=True)
class WeightEntry:
    feature: Feature
    model: str  # "" = every model of the feature
    credits_per_unit: Decimal


def _check_publish_instant(effective_from: dt.datetime, now: dt.datetime) -> None:
    if effective_from.tzinfo is None:
        raise ValidationFailed(fields={"effectiveFrom": ["Give a time zone (e.g. Z)."]})
    if effective_from < now + MIN_LEAD:
        raise ValidationFailed(
            fields={
                "effectiveFrom": [
                    f"Must be at least {int(MIN_LEAD.total_seconds())} seconds in the future: "
                    "values in force are never changed."
                ]
            }
        )


def _announce_weights(environment_id: uuid.UUID) -> None:
    weight_cache.weights_changed(environment_id)
    transaction.on_commit(lambda: weight_cache.weights_changed(environment_id))


@transaction.atomic
def credit_weights_publish(
    *,
    environment: Environment,
    effective_from: dt.datetime,
    entries: Sequence[WeightEntry],
    actor: Actor | None,
) -> list[CreditWeight]:
    """Publish a batch of weights, all in force from ``effective_from`` (in the future).

    Weights in force are never changed: a new value is a new row at a later
    instant. Replaying the same batch at the same instant is a no-op (the
    existing rows are returned); a different batch at that instant is 409
    ``weight_conflict``.
    """
    now = timezone.now()
    _check_publish_instant(effective_from, now)
    if not entries:
        raise ValidationFailed(fields={"entries": ["At least one entry."]})
    if len(entries) > PUBLISH_MAX_ENTRIES:
        raise ValidationFailed(fields={"entries": [f"At most {PUBLISH_MAX_ENTRIES} entries."]})
    wanted: dict[tuple[uuid.UUID, str], Decimal] = {}
    for index, entry in enumerate(entries):
        if entry.feature.environment_id != environment.pk:
            raise ValidationFailed(fields={f"entries.{index}.featureKey": ["Unknown feature."]})
        value = entry.credits_per_unit
        if not value.is_finite() or value <= 0 or value > 1_000_000:
            raise ValidationFailed(
                fields={f"entries.{index}.creditsPerUnit": ["Between 0 (excluded) and 1000000."]}
            )
        if value.quantize(Decimal("0.000001")) != value:
            raise ValidationFailed(
                fields={f"entries.{index}.creditsPerUnit": ["At most 6 decimal places."]}
            )
        key = (entry.feature.pk, entry.model)
        if key in wanted:
            raise ValidationFailed(
                fields={f"entries.{index}": ["The same feature and model twice in one batch."]}
            )
        wanted[key] = value
    existing = list(scoped(CreditWeight, environment).filter(effective_from=effective_from))
    if existing:
        have = {(w.feature_id, w.model): w.credits_per_unit for w in existing}
        if have == wanted:
            return existing
        raise Conflict(
            "Another batch of weights is published for this instant.",
            code=errors.WEIGHT_CONFLICT,
        )
    batch = uuid.uuid4()
    label = actor_label(actor)
    rows = [
        CreditWeight(
            environment=environment,
            feature_id=feature_id,
            model=model,
            credits_per_unit=value,
            effective_from=effective_from,
            batch_id=batch,
            created_by=label,
            created_at=now,
        )
        for (feature_id, model), value in wanted.items()
    ]
    try:
        with transaction.atomic():
            CreditWeight.objects.bulk_create(rows)
    except IntegrityError:
        raise Conflict(
            "Another batch of weights was published for this instant.",
            code=errors.WEIGHT_CONFLICT,
        ) from None
    _announce_weights(environment.pk)
    return rows


@transaction.atomic
def credit_weight_withdraw(*, weight: CreditWeight, actor: Actor | None) -> None:
    """Withdraw a weight that is not in force yet (409 ``weight_in_force`` otherwise).

    Refused within ``MIN_LEAD`` of its instant too, so that no process's cache
    can have used it.
    """
    if weight.effective_from < timezone.now() + MIN_LEAD:
        raise Conflict(
            "This weight is in force (or about to be); publish a new one instead.",
            code=errors.WEIGHT_IN_FORCE,
        )
    environment_id = weight.environment_id
    weight.delete()
    _announce_weights(environment_id)


@dataclass(frozen=True)
class PriceEntry:
    denomination: str
    currency: str
    price_per_credit: Decimal


@transaction.atomic
def credit_prices_publish(
    *,
    environment: Environment,
    effective_from: dt.datetime,
    entries: Sequence[PriceEntry],
    actor: Actor | None,
) -> list[CreditPrice]:
    """Publish prices per credit, in force from ``effective_from`` (in the future).

    Same rules as weights: never changed once published; the same batch again is a
    no-op; another batch at the same instant is 409 ``price_conflict``. Every
    denomination must have a credit model.
    """
    now = timezone.now()
    _check_publish_instant(effective_from, now)
    if not entries:
        raise ValidationFailed(fields={"entries": ["At least one entry."]})
    if len(entries) > PUBLISH_MAX_ENTRIES:
        raise ValidationFailed(fields={"entries": [f"At most {PUBLISH_MAX_ENTRIES} entries."]})
    known = set(scoped(CreditModel, environment).values_list("denomination", flat=True))
    wanted: dict[str, tuple[str, Decimal]] = {}
    for index, entry in enumerate(entries):
        if entry.denomination not in known:
            raise ValidationFailed(
                fields={f"entries.{index}.denomination": ["No credit model has it."]}
            )
        if entry.denomination in wanted:
            raise ValidationFailed(
                fields={f"entries.{index}.denomination": ["Twice in one batch."]}
            )
        price = entry.price_per_credit
        if not price.is_finite() or price <= 0:
            raise ValidationFailed(
                fields={f"entries.{index}.pricePerCredit": ["Must be greater than 0."]}
            )
        wanted[entry.denomination] = (entry.currency.upper(), price)
    existing = list(scoped(CreditPrice, environment).filter(effective_from=effective_from))
    if existing:
        have = {p.denomination: (p.currency, p.price_per_credit) for p in existing}
        if have == wanted:
            return existing
        raise Conflict("Other prices are published for this instant.", code=errors.PRICE_CONFLICT)
    batch = uuid.uuid4()
    label = actor_label(actor)
    rows = [
        CreditPrice(
            environment=environment,
            denomination=denomination,
            currency=currency,
            price_per_credit=price,
            effective_from=effective_from,
            batch_id=batch,
            created_by=label,
            created_at=now,
        )
        for denomination, (currency, price) in wanted.items()
    ]
    try:
        with transaction.atomic():
            CreditPrice.objects.bulk_create(rows)
    except IntegrityError:
        raise Conflict(
            "Other prices were published for this instant.", code=errors.PRICE_CONFLICT
        ) from None
    return rows
