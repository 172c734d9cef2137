"""An environment's billing settings: payment terms, grace period, Stripe mode, and the
invoice-number prefix of its kind (test or live)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.accounts.audit import Actor, audit_change, changes_of
from apps.accounts.models import AuditEntry, Environment
from apps.billing.models import BillingSettings, StripeMode
from apps.core.errors import ValidationFailed
from apps.core.tenancy import scoped_to_environments


@dataclasses.dataclass(frozen=True)
class EnvBilling:
    payment_terms_days: int = 0
    grace_period_days: int | None = None
    stripe_mode: str = StripeMode.NONE
    prefix: str = "INV"


def _env_billing(environment_ids: Iterable[Any]) -> dict[Any, EnvBilling]:
    ids = set(environment_ids)
    kinds = dict(Environment.objects.filter(pk__in=ids).values_list("pk", "kind"))
    rows = {row.environment_id: row for row in scoped_to_environments(BillingSettings, ids)}
    out = {}
    for env_id in ids:
        prefix = "INV" if kinds.get(env_id) == Environment.Kind.LIVE else "INV-TEST"
        row = rows.get(env_id)
        out[env_id] = (
            EnvBilling(row.payment_terms_days, row.grace_period_days, row.stripe_mode, prefix)
            if row
            else EnvBilling(prefix=prefix)
        )
    return out


def billing_settings_get(environment: Environment) -> EnvBilling:
    return _env_billing([environment.pk])[environment.pk]


@transaction.atomic
def billing_settings_update(
    *,
    environment: Environment,
    payment_terms_days: int | None = None,
    grace_period_days: Any = "unchanged",
    stripe_mode: str | None = None,
    actor: Actor | None = None,
) -> BillingSettings:
    """Change payment terms, grace period or Stripe mode; with an ``actor`` (a person or
    key asking), a change is audited (the system's own resets are audited by their cause)."""
    problems: dict[str, list[str]] = {}
    if payment_terms_days is not None and not 0 <= payment_terms_days <= 365:
        problems["paymentTermsDays"] = ["Between 0 and 365 days."]
    if isinstance(grace_period_days, int) and not 0 <= grace_period_days <= 365:
        problems["gracePeriodDays"] = ["Between 0 and 365 days."]
    if stripe_mode is not None and stripe_mode not in StripeMode.values:
        problems["stripeMode"] = [f"One of {', '.join(StripeMode.values)}."]
    if problems:
        raise ValidationFailed(fields=problems)
    row, _ = BillingSettings.objects.select_for_update().get_or_create(environment=environment)
    before = _settings_values(row)
    if payment_terms_days is not None:
        row.payment_terms_days = payment_terms_days
    if grace_period_days != "unchanged":
        row.grace_period_days = grace_period_days
    if stripe_mode is not None:
        row.stripe_mode = stripe_mode
    row.updated_at = timezone.now()
    row.save()
    changes = changes_of(before, _settings_values(row))
    if actor is not None and changes:
        audit_change(
            environment=environment,
            action=AuditEntry.Action.BILLING_SETTINGS_CHANGED,
            target_type="billing_settings",
            target_id=environment.pk,
            actor=actor,
            detail={"changes": changes},
        )
    return row


def _settings_values(row: BillingSettings) -> dict[str, Any]:
    return {
        "paymentTermsDays": row.payment_terms_days,
        "gracePeriodDays": row.grace_period_days,
        "stripeMode": row.stripe_mode,
    }
