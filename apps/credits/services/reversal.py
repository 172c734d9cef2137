"""Reversing a deduction: by hand (by ledger entry) or for an event (by its reference)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import AuditEntry
from apps.core.errors import Conflict, NotFound
from apps.core.tenancy import scoped
from apps.credits import errors
from apps.credits.amounts import ZERO
from apps.credits.ledger import PoolBook, lock_pool
from apps.credits.models import CreditGrant, CreditTransaction, TransactionType

from .audit import _audit, actor_label

if TYPE_CHECKING:
    from apps.accounts.audit import Actor
    from apps.accounts.models import Environment


def _reverse_locked(
    book: PoolBook, original: CreditTransaction, description: str
) -> CreditTransaction:
    """Post the reversal of a deduction and give its credits back to the grants it drew on.

    Credits return to their grants; a grant that has lapsed since (expired, or
    closed by a rollover) gets them back and loses them at once (an expiration).
    The part no grant backed (a soft pool's debt) simply stops being owed.
    Restored credits then pay any other debt of the pool.
    """
    was_in_debt = book.pool.balance < 0
    restored = original.consumptions.values_list("grant_id", "amount")
    per_grant: dict[uuid.UUID, Decimal] = {}
    for grant_id, amount in restored:
        per_grant[grant_id] = per_grant.get(grant_id, ZERO) + amount
    entry = book.post(
        TransactionType.REVERSAL,
        -original.amount,
        reversed_transaction=original,
        event_ref=original.event_ref,
        description=description or f"Reversal of entry #{original.sequence}",
    )
    grants = {g.pk: g for g in CreditGrant.objects.filter(pk__in=list(per_grant))}
    for grant_id in sorted(per_grant, key=str):
        grant = book.attach_grant(grants[grant_id])
        amount = per_grant[grant_id]
        book.give(grant, amount)
        if not grant.is_live(book.now):
            book.post(
                TransactionType.EXPIRATION,
                -amount,
                grant=grant,
                description="Reversed credits of a lapsed grant",
            )
            book.take(grant, amount)
    if was_in_debt:
        book.exclude_from_settlement.add(original.pk)
        book.settle_debt()
    return entry


def credits_reverse(
    *,
    environment: Environment,
    transaction_id: uuid.UUID | str | None = None,
    event_ref: str | None = None,
    actor: Actor | None,
    description: str = "",
) -> CreditTransaction | None:
    """Reverse a deduction: by ledger entry id, or the deduction made for an event.

    By ``transaction_id``: an entry that is not a deduction is 409
    ``not_reversible``; one reversed already is 409 ``already_reversed``.
    By ``event_ref`` (for ingestion): idempotent, the existing reversal is
    returned; None when the event caused no deduction.
    """
    if (transaction_id is None) == (event_ref is None):
        raise ValueError("give exactly one of transaction_id and event_ref")
    with transaction.atomic():
        lookup = scoped(CreditTransaction, environment.pk)
        if transaction_id is not None:
            try:
                original = lookup.get(pk=transaction_id)
            except (
                CreditTransaction.DoesNotExist,
                ValueError,
                TypeError,
                DjangoValidationError,
            ):
                raise NotFound("No such credit transaction.") from None
        else:
            by_event = lookup.filter(
                event_ref=event_ref, transaction_type=TransactionType.DEDUCTION
            ).first()
            if by_event is None:
                return None
            original = by_event
        if original.transaction_type != TransactionType.DEDUCTION:
            raise Conflict("Only deductions can be reversed.", code=errors.NOT_REVERSIBLE)
        pool = lock_pool(environment.pk, original.pool_id)
        existing = CreditTransaction.objects.filter(reversed_transaction=original).first()
        if existing is not None:
            if event_ref is not None:
                return existing
            raise Conflict(
                "This deduction has been reversed already.", code=errors.ALREADY_REVERSED
            )
        book = PoolBook(pool, now=timezone.now(), actor_label=actor_label(actor))
        book.settle()
        balance_before = pool.balance
        entry = _reverse_locked(book, original, description)
        book.flush()
        if transaction_id is not None:  # by hand; an event's reversal follows its event
            _audit(
                pool,
                AuditEntry.Action.CREDITS_REVERSED,
                target=("credit_transaction", entry.pk),
                actor=actor,
                detail={
                    "reversed": original.pk,
                    "amount": -original.amount,
                    "balance": [balance_before, pool.balance],
                },
            )
    return entry
