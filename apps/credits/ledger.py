"""The pool book: every change to a pool happens here, under the pool's row lock.

Lock order: a pool row (``SELECT ... FOR UPDATE``) is taken first, and grants,
ledger entries and consumption rows of that pool are only written while it is
held. No operation locks two pools, so there is no lock cycle.

A :class:`PoolBook` collects the ledger entries, new and changed grants and
consumption rows of one operation and writes them in a handful of statements
(:meth:`PoolBook.flush`). Before any operation the book *settles* the pool: a
due rollover is applied and lapsed grants are expired, so the balance never
counts credits that can no longer be spent, whether or not the periodic tasks
have run yet.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection
from django.db.models import F, Sum
from django.db.models.functions import Coalesce

from apps.core.errors import NotFound

from .amounts import ZERO, add_months
from .models import (
    DEFAULT_PRIORITY,
    ROLLOVER_GRANT_TYPES,
    CreditConsumption,
    CreditGrant,
    CreditPool,
    CreditTransaction,
    GrantType,
    RolloverPolicy,
    TransactionType,
)

SPEND_ORDER = (
    "priority",
    F("expires_at").asc(nulls_last=True),
    "granted_at",
    "created_at",
    "id",
)

_TOTAL_FIELD: dict[str, str] = {
    TransactionType.GRANT: "total_granted",
    TransactionType.EXPIRATION: "total_expired",
    TransactionType.REVERSAL: "total_reversed",
    TransactionType.ADJUSTMENT: "total_adjusted",
}
_POOL_FIELDS = [
    "balance",
    "total_granted",
    "total_consumed",
    "total_expired",
    "total_reversed",
    "total_adjusted",
    "last_sequence",
    "current_period_start",
    "current_period_end",
    "rolled_over_through",
    "updated_at",
]


def lock_pool(environment_id: uuid.UUID, pool_id: uuid.UUID | str) -> CreditPool:
    """The pool, row-locked for the rest of the transaction; 404 outside the environment."""
    try:
        return CreditPool.objects.select_for_update().get(environment_id=environment_id, pk=pool_id)
    except (CreditPool.DoesNotExist, ValueError, TypeError, DjangoValidationError):
        raise NotFound("No such credit pool.") from None


class PoolBook:
    """One operation on one locked pool."""

    def __init__(self, pool: CreditPool, *, now: dt.datetime, actor_label: str) -> None:
        self.pool = pool
        self.now = now
        self.actor_label = actor_label
        self.entries: list[CreditTransaction] = []
        self.consumptions: list[CreditConsumption] = []
        self._new_grants: list[CreditGrant] = []
        self._changed_grants: dict[uuid.UUID, CreditGrant] = {}
        self._grants: list[CreditGrant] | None = None
        # Ledger entries (ids) that must not take part in debt settlement (being reversed).
        self.exclude_from_settlement: set[uuid.UUID] = set()

    # -- grants --------------------------------------------------------------------------

    def use_grants(self, grants: list[CreditGrant]) -> None:
        """The pool's grants holding credits, in spend order, read for several books at
        once (``credits_deduct_for_usage_many``) instead of one query per book."""
        self._grants = grants

    def grants(self) -> list[CreditGrant]:
        """The pool's grants that hold credits, in spend order (read once per operation)."""
        if self._grants is None:
            self._grants = list(
                CreditGrant.objects.filter(pool_id=self.pool.pk, remaining__gt=0).order_by(
                    *SPEND_ORDER
                )
            )
        return self._grants

    def live_grants(self) -> Iterable[CreditGrant]:
        return (g for g in self.grants() if g.remaining > 0 and g.is_live(self.now))

    def add_grant(self, grant: CreditGrant) -> None:
        self._new_grants.append(grant)
        grants = self.grants()
        grants.append(grant)
        grants.sort(key=_spend_key)

    def attach_grant(self, grant: CreditGrant) -> CreditGrant:
        """A grant read separately (e.g. one a reversal restores), tracked by this book."""
        for known in self.grants():
            if known.pk == grant.pk:
                return known
        grants = self.grants()
        grants.append(grant)
        grants.sort(key=_spend_key)
        return grant

    def _changed(self, grant: CreditGrant) -> None:
        if grant not in self._new_grants:
            self._changed_grants[grant.pk] = grant

    def take(self, grant: CreditGrant, amount: Decimal) -> None:
        grant.remaining -= amount
        self._changed(grant)

    def give(self, grant: CreditGrant, amount: Decimal) -> None:
        grant.remaining += amount
        self._changed(grant)

    def close(self, grant: CreditGrant) -> None:
        grant.closed_at = self.now
        self._changed(grant)

    # -- ledger --------------------------------------------------------------------------

    def post(self, transaction_type: str, amount: Decimal, **fields: Any) -> CreditTransaction:
        pool = self.pool
        before = pool.balance
        pool.balance = before + amount
        pool.last_sequence += 1
        if transaction_type == TransactionType.DEDUCTION:
            pool.total_consumed -= amount
        elif transaction_type == TransactionType.EXPIRATION:
            pool.total_expired -= amount
        else:
            total = _TOTAL_FIELD[transaction_type]
            setattr(pool, total, getattr(pool, total) + amount)
        entry = CreditTransaction(
            environment_id=pool.environment_id,
            pool=pool,
            sequence=pool.last_sequence,
            transaction_type=transaction_type,
            amount=amount,
            balance_before=before,
            balance_after=pool.balance,
            created_by=self.actor_label,
            created_at=self.now,
            **fields,
        )
        self.entries.append(entry)
        return entry

    def consume(self, entry: CreditTransaction, grant: CreditGrant, amount: Decimal) -> None:
        self.take(grant, amount)
        self.consumptions.append(
            CreditConsumption(
                environment_id=self.pool.environment_id,
                transaction=entry,
                grant=grant,
                amount=amount,
                created_at=self.now,
            )
        )

    def draw(self, entry: CreditTransaction, credits: Decimal) -> Decimal:
        """Draw up to ``credits`` from live grants, in spend order, for ``entry``."""
        needed = credits
        for grant in self.live_grants():
            if needed <= 0:
                break
            part = min(grant.remaining, needed)
            self.consume(entry, grant, part)
            needed -= part
        return credits - needed

    def available(self) -> Decimal:
        """Credits that can be spent now (live grants)."""
        return sum((g.remaining for g in self.live_grants()), ZERO)

    # -- settling ------------------------------------------------------------------------

    def settle(self) -> None:
        """Apply a due rollover, then expire lapsed grants."""
        end = self.pool.current_period_end
        through = self.pool.rolled_over_through
        if end is not None and end <= self.now and (through is None or through < end):
            self.rollover(end)
        self.expire_lapsed()

    def expire_lapsed(self) -> Decimal:
        expired = ZERO
        for grant in self.grants():
            if (
                grant.remaining > 0
                and grant.expires_at is not None
                and grant.expires_at <= self.now
            ):
                amount = grant.remaining
                self.post(
                    TransactionType.EXPIRATION, -amount, grant=grant, description="Grant expired"
                )
                self.take(grant, amount)
                expired += amount
        return expired

    def rollover(self, period_end: dt.datetime) -> None:
        """Close the period's plan and rollover credits; carry what the policy keeps.

        Each such grant's remaining credits leave it: the part the policy drops
        as an expiration, the part it keeps as an adjustment into one new
        rollover grant (adjustments net to zero). Purchased, promotional,
        refund and manual grants are not touched: they keep their own expiry.
        """
        pool = self.pool
        candidates = [
            g
            for g in self.grants()
            if g.remaining > 0
            and g.grant_type in ROLLOVER_GRANT_TYPES
            and g.closed_at is None
            and g.granted_at < period_end
            and (g.expires_at is None or g.expires_at >= period_end)
        ]
        total = sum((g.remaining for g in candidates), ZERO)
        if pool.rollover_policy == RolloverPolicy.FULL:
            carry = total
        elif pool.rollover_policy == RolloverPolicy.CAPPED:
            carry = min(total, pool.rollover_cap or ZERO)
        else:
            carry = ZERO
        expires_at = (
            add_months(period_end, pool.grant_expiry_months) if pool.grant_expiry_months else None
        )
        if expires_at is not None and expires_at <= self.now:
            carry = ZERO  # it would lapse at once
        label = f"Period rollover ({pool.rollover_policy})"
        to_carry = carry
        for grant in candidates:
            kept = min(grant.remaining, to_carry)
            dropped = grant.remaining - kept
            if dropped > 0:
                self.post(TransactionType.EXPIRATION, -dropped, grant=grant, description=label)
            if kept > 0:
                self.post(
                    TransactionType.ADJUSTMENT,
                    -kept,
                    grant=grant,
                    description=f"{label}: carried to the next period",
                )
            to_carry -= kept
            self.take(grant, grant.remaining)
            self.close(grant)
        if carry > 0:
            successor = CreditGrant(
                environment_id=pool.environment_id,
                pool=pool,
                grant_type=GrantType.ROLLOVER,
                amount=carry,
                remaining=carry,
                priority=DEFAULT_PRIORITY[GrantType.ROLLOVER],
                expires_at=expires_at,
                granted_at=period_end,
                source_ref=f"rollover:{period_end.isoformat()}",
                description=f"Carried over from the period ending {period_end:%Y-%m-%d}",
                created_by=self.actor_label,
                created_at=self.now,
            )
            self.add_grant(successor)
            self.post(
                TransactionType.ADJUSTMENT,
                carry,
                grant=successor,
                description=f"{label}: carried over",
            )
        pool.rolled_over_through = period_end

    def settle_debt(self) -> None:
        """Pay a soft pool's debt (deductions no grant backed) from live grants, oldest first.

        Call after credits were added to a pool whose balance was negative.
        """
        pending = (
            CreditTransaction.objects.filter(
                pool_id=self.pool.pk,
                transaction_type=TransactionType.DEDUCTION,
                unbacked__gt=0,
                reversal__isnull=True,
            )
            .exclude(pk__in=self.exclude_from_settlement)
            .annotate(backed=Coalesce(Sum("consumptions__amount"), ZERO))
            .order_by("sequence")
        )
        for deduction in pending:
            owed = -deduction.amount - deduction.backed
            if owed > 0:
                drawn = self.draw(deduction, owed)
                if drawn < owed:
                    break

    # -- writing -------------------------------------------------------------------------

    def flush(self) -> None:
        if self._new_grants:
            CreditGrant.objects.bulk_create(self._new_grants)
        for grant in self._changed_grants.values():
            grant.save(update_fields=["remaining", "closed_at"])
        if self.entries:
            CreditTransaction.objects.bulk_create(self.entries)
        if self.consumptions:
            CreditConsumption.objects.bulk_create(self.consumptions)
        self.pool.updated_at = self.now
        self.pool.save(update_fields=_POOL_FIELDS)
        self._new_grants, self._changed_grants = [], {}
        self.entries, self.consumptions = [], []


def flush_books(books: Iterable[PoolBook]) -> None:
    """``flush()`` for several books (distinct pools) in one statement per table, in the
    same order: new grants, changed grants, entries, consumptions, pools."""
    books = list(books)
    new_grants = [g for book in books for g in book._new_grants]
    changed = [g for book in books for g in book._changed_grants.values()]
    entries = [e for book in books for e in book.entries]
    consumptions = [c for book in books for c in book.consumptions]
    if new_grants:
        CreditGrant.objects.bulk_create(new_grants)
    if changed:
        _update_rows(CreditGrant, changed, ["remaining", "closed_at"])
    if entries:
        _insert_rows(CreditTransaction, entries)
    if consumptions:
        _insert_rows(CreditConsumption, consumptions)
    for book in books:
        book.pool.updated_at = book.now
    if books:
        _update_rows(CreditPool, [book.pool for book in books], _POOL_FIELDS)
    for book in books:
        book._new_grants, book._changed_grants = [], {}
        book.entries, book.consumptions = [], []


def _json_value(value: Any) -> Any:
    """A field value for ``jsonb_to_recordset``: JSON natives as they are, anything else
    (decimals, instants, uuids) as its exact text, cast by the column's type."""
    if value is None or isinstance(value, bool | int | str | dict | list):
        return value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _insert_rows(model: Any, rows: list[Any]) -> None:
    """``bulk_create`` as one ``INSERT ... SELECT FROM jsonb_to_recordset`` (for the rows
    of a batch; defaults must already be on the instances, as they are once built)."""
    meta = model._meta
    columns = [
        f
        for f in meta.concrete_fields
        if not (f.primary_key and f.get_internal_type().endswith("AutoField"))
    ]
    names = ", ".join(c.column for c in columns)
    types = ", ".join(f"{c.column} {c.db_type(connection)}" for c in columns)
    data = [{c.column: _json_value(getattr(row, c.attname)) for c in columns} for row in rows]
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {meta.db_table} ({names})"  # noqa: S608 -- names from the model
            f" SELECT {names} FROM jsonb_to_recordset(%s::jsonb) AS v({types})",
            [json.dumps(data)],
        )


def _update_rows(model: Any, rows: list[Any], fields: list[str]) -> None:
    """``bulk_update`` as one ``UPDATE ... FROM jsonb_to_recordset`` (Django's CASE per
    field and row costs ~1 ms of Python per row at batch sizes). Values travel as text
    and are cast by the column's type: decimals stay exact."""
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    pk = meta.pk
    types = ", ".join(
        [f"{pk.column} {pk.db_type(connection)}"]
        + [f"{c.column} {c.db_type(connection)}" for c in columns]
    )
    assignments = ", ".join(f"{c.column} = v.{c.column}" for c in columns)
    data = [
        {
            pk.column: str(row.pk),
            **{c.column: _json_value(getattr(row, c.attname)) for c in columns},
        }
        for row in rows
    ]
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {meta.db_table} AS t SET {assignments}"  # noqa: S608 -- names from the model
            f" FROM jsonb_to_recordset(%s::jsonb) AS v({types})"
            f" WHERE t.{pk.column} = v.{pk.column}",
            [json.dumps(data)],
        )


def _spend_key(grant: CreditGrant) -> tuple[Any, ...]:
    expires = grant.expires_at
    return (
        grant.priority,
        expires is None,
        expires or grant.granted_at,
        grant.granted_at,
        grant.created_at,
        str(grant.pk),
    )
