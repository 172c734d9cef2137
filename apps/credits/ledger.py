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

import dataclasses
import datetime as dt
import functools
import json
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection
from django.db.models import F, Sum
from django.db.models.base import ModelState
from django.db.models.functions import Coalesce

from apps.core.db import numbered, prepared_cursor
from apps.core.errors import NotFound
from apps.core.months import add_months
from apps.core.tenancy import scoped

from .amounts import ZERO
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


@functools.cache
def _blueprint(
    model: Any,
) -> tuple[dict[str, Any], tuple[tuple[str, Any], ...], dict[str, str]]:
    """A model's field defaults (static ones, and factories to call per instance) and its
    forward relations (name -> attname)."""
    static: dict[str, Any] = {}
    factories = []
    relations = {}
    for field in model._meta.concrete_fields:
        if field.is_relation:
            relations[field.name] = field.attname
        if field.has_default() and callable(field.default):
            factories.append((field.attname, field.default))
        else:
            static[field.attname] = field.get_default()
    return static, tuple(factories), relations


def new_instance(cls: Any, /, **values: Any) -> Any:
    """``model(**values)`` for the ledger's hot path, ~20x cheaper: the same attribute
    values and defaults, related instances cached as the constructor caches them, but
    none of ``Model.__init__``'s per-field machinery (~0.1 ms per ledger entry, most of
    a 1000-event batch's Python time) and no ``pre_init``/``post_init`` signals (the
    ledger models have no receivers). Relations are given by instance (``pool=``) or by
    id (``pool_id=``)."""
    static, factories, relations = _blueprint(cls)
    obj = cls.__new__(cls)
    state = obj._state = ModelState()
    attrs = obj.__dict__
    attrs.update(static)
    for attname, factory in factories:
        if attname not in values:
            attrs[attname] = factory()
    for name, value in values.items():
        column = relations.get(name)
        if column is not None and column != name:
            attrs[column] = None if value is None else value.pk
            state.fields_cache[name] = value
            db = value._state.db if value is not None else None
            if db is not None and state.db is None:
                state.db = db  # as the relation's descriptor does
        else:
            attrs[name] = value
    return obj


def lock_pool(environment_id: uuid.UUID, pool_id: uuid.UUID | str) -> CreditPool:
    """The pool, row-locked for the rest of the transaction; 404 outside the environment."""
    try:
        return scoped(CreditPool.objects.select_for_update(), environment_id).get(pk=pool_id)
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
        entry = new_instance(
            CreditTransaction,
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
            new_instance(
                CreditConsumption,
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


def flush_books(
    books: Iterable[PoolBook], *, unless_used: list[tuple[uuid.UUID, str]] | None = None
) -> bool:
    """``flush()`` for several books (distinct pools) in ONE statement, whatever the number
    of books and rows: new grants, changed grants, entries, consumptions and pools, each
    an ``INSERT ... SELECT`` / ``UPDATE ... FROM`` over ``jsonb_to_recordset``, joined as
    data-modifying CTEs. The foreign keys between them (an entry's grant, a consumption's
    entry) are checked at the end of the statement, when every row is in. Its text
    depends only on which kinds of rows there are, so it is prepared
    (``apps.core.db``): a usage deduction's statement is planned once per connection,
    not per event (that planning and the quoting of its jsonb were ~0.6 ms an event).

    ``unless_used``: (pool id, idempotency key) pairs; when any is already in the
    ledger, the statement writes nothing and False is returned (the caller holds the
    pools' locks, so the answer cannot change before its commit)."""
    books = list(books)
    new_grants = [g for book in books for g in book._new_grants]
    changed = [g for book in books for g in book._changed_grants.values()]
    entries = [e for book in books for e in book.entries]
    consumptions = [c for book in books for c in book.consumptions]
    for book in books:
        book.pool.updated_at = book.now
    guarded = unless_used is not None
    parts: list[tuple[str, list[Any]]] = []
    if new_grants:
        parts.append(_insert_part(CreditGrant, new_grants, guarded))
    if changed:
        parts.append(_update_part(CreditGrant, changed, ("remaining", "closed_at"), guarded))
    if entries:
        parts.append(_insert_part(CreditTransaction, entries, guarded))
    if consumptions:
        parts.append(_insert_part(CreditConsumption, consumptions, guarded))
    if books:
        pools = [book.pool for book in books]
        parts.append(_update_part(CreditPool, pools, tuple(_POOL_FIELDS), guarded))
    written = True
    if parts:
        if guarded:
            probes = unless_used or []
            parts.insert(0, (_GUARD, [[p for p, _ in probes], [k for _, k in probes]]))
            names = ["guard"] + [f"w{n}" for n in range(len(parts) - 1)]
        else:
            names = [f"w{n}" for n in range(len(parts))]
        if len(parts) == 1:
            sql, params = parts[0]
        else:
            sql = "WITH " + ", ".join(
                f"{n} AS ({part})" for n, (part, _) in zip(names, parts, strict=True)
            )
            sql += " SELECT EXISTS (SELECT 1 FROM guard)" if guarded else " SELECT 1"
            params = [p for _, values in parts for p in values]
        with prepared_cursor() as cur:
            cur.execute(numbered(sql), params)
            if guarded:
                written = not cur.fetchone()[0]
    for book in books:
        book._new_grants, book._changed_grants = [], {}
        book.entries, book.consumptions = [], []
    return written


_GUARD = (
    "SELECT 1 FROM unnest(%s::uuid[], %s::text[]) AS w(pool_id, key)"
    " CROSS JOIN LATERAL (SELECT 1 FROM credits_credittransaction AS t"
    " WHERE t.pool_id = w.pool_id AND t.idempotency_key = w.key"
    " AND t.idempotency_key <> '' LIMIT 1) AS x LIMIT 1"
)
_UNGUARDED = " AND NOT EXISTS (SELECT 1 FROM guard)"


def _encode(rows: list[dict[str, Any]]) -> str:
    """Rows as one JSON text. JSON natives stay as they are; decimals, instants and uuids
    travel as their exact text (``default=str``) and are cast by the column's type."""
    return json.dumps(rows, default=str, separators=(",", ":"))


@functools.cache
def _insert_sql(model: Any) -> tuple[str, tuple[tuple[str, str], ...]]:
    meta = model._meta
    columns = [
        f
        for f in meta.concrete_fields
        if not (f.primary_key and f.get_internal_type().endswith("AutoField"))
    ]
    names = ", ".join(c.column for c in columns)
    types = ", ".join(f"{c.column} {c.db_type(connection)}" for c in columns)
    sql = (
        f"INSERT INTO {meta.db_table} ({names})"  # noqa: S608 -- names from the model
        f" SELECT {names} FROM jsonb_to_recordset(%s::jsonb) AS v({types})"
    )
    return sql, tuple((c.column, c.attname) for c in columns)


def _insert_part(model: Any, rows: list[Any], guarded: bool = False) -> tuple[str, list[Any]]:
    """``bulk_create`` as an ``INSERT ... SELECT FROM jsonb_to_recordset`` (defaults must
    already be on the instances, as they are once built)."""
    sql, columns = _insert_sql(model)
    if guarded:
        sql += " WHERE true" + _UNGUARDED
    data = [{column: row.__dict__[attname] for column, attname in columns} for row in rows]
    return sql, [_encode(data)]


@functools.cache
def _update_sql(model: Any, fields: tuple[str, ...]) -> tuple[str, tuple[tuple[str, str], ...]]:
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    pk = meta.pk
    types = ", ".join(
        [f"{pk.column} {pk.db_type(connection)}"]
        + [f"{c.column} {c.db_type(connection)}" for c in columns]
    )
    assignments = ", ".join(f"{c.column} = v.{c.column}" for c in columns)
    sql = (
        f"UPDATE {meta.db_table} AS t SET {assignments}"  # noqa: S608 -- names from the model
        f" FROM jsonb_to_recordset(%s::jsonb) AS v({types})"
        f" WHERE t.{pk.column} = v.{pk.column}"
    )
    return sql, tuple((c.column, c.attname) for c in [pk, *columns])


def _update_part(
    model: Any, rows: list[Any], fields: tuple[str, ...], guarded: bool = False
) -> tuple[str, list[Any]]:
    """``bulk_update`` as an ``UPDATE ... FROM jsonb_to_recordset`` (Django's CASE per field
    and row costs ~1 ms of Python per row at batch sizes). Decimals stay exact (text)."""
    sql, columns = _update_sql(model, fields)
    if guarded:
        sql += _UNGUARDED
    data = [{column: row.__dict__[attname] for column, attname in columns} for row in rows]
    return sql, [_encode(data)]


# -- reading books under lock -----------------------------------------------------------------


@functools.cache
def _select_list(model: Any, alias: str) -> str:
    return ", ".join(f"{alias}.{f.column}" for f in model._meta.concrete_fields)


def _instances(model: Any, rows: Iterable[tuple[Any, ...]]) -> list[Any]:
    """Model instances from rows of every concrete column, in order (as ``from_db``),
    JSON columns decoded as the ORM would."""
    fields = model._meta.concrete_fields
    names = [f.attname for f in fields]
    converters = [(i, f.from_db_value) for i, f in enumerate(fields) if hasattr(f, "from_db_value")]
    out = []
    for row in rows:
        values = list(row)
        for index, convert in converters:
            values[index] = convert(values[index], None, connection)
        out.append(model.from_db(connection.alias, names, values))
    return out


@dataclasses.dataclass(slots=True)
class LockedBooks:
    """What :func:`lock_books` read: the pools (row-locked), which idempotency keys they
    have already used, and their grants holding credits, in spend order."""

    pools: dict[tuple[uuid.UUID, str], CreditPool]
    used_keys: set[tuple[uuid.UUID, str]]
    grants: dict[uuid.UUID, list[CreditGrant]]


@functools.cache
def _lock_pools_sql() -> str:
    return (
        f"SELECT {_select_list(CreditPool, 'p')} FROM credits_creditpool AS p"  # noqa: S608
        " WHERE p.environment_id = %s AND (p.customer_id, p.denomination) IN"
        " (SELECT * FROM unnest(%s::uuid[], %s::text[])) ORDER BY p.id FOR UPDATE"
    )


def lock_books(
    environment_id: uuid.UUID, charges: Iterable[tuple[uuid.UUID, str, str]]
) -> LockedBooks:
    """Lock the existing pools of the charges' (customer, denomination) (in id order),
    then read what :func:`read_books` reads of them: two or three prepared statements,
    each with its own snapshot (READ COMMITTED), so the keys and grants are read after
    the locks are held and include whatever the previous holder committed. A pair
    without a pool is absent from ``pools``. ``charges``: (customer id, denomination,
    idempotency key; "" for none)."""
    charges = list(charges)
    pairs = sorted({(c, d) for c, d, _ in charges}, key=lambda pair: (str(pair[0]), pair[1]))
    scope: list[Any] = [environment_id, [c for c, _ in pairs], [d for _, d in pairs]]
    (pool_rows,) = _run_prepared([(_lock_pools_sql(), scope)])
    pools = {
        (pool.customer_id, pool.denomination): pool for pool in _instances(CreditPool, pool_rows)
    }
    probes = [(pools[(c, d)].pk, key) for c, d, key in charges if key and (c, d) in pools]
    found = read_books([pool.pk for pool in pools.values()], probes)
    found.pools = pools
    return found


_GRANTS_ORDER = (
    " ORDER BY g.pool_id, g.priority, g.expires_at ASC NULLS LAST, g.granted_at, g.created_at, g.id"
)


def _run_prepared(statements: list[tuple[str, list[Any]] | None]) -> list[list[tuple[Any, ...]]]:
    """Run the statements (``%s`` placeholders) prepared, one after the other, each in its
    own round trip and with its own snapshot; every statement's rows (none for a None).

    Prepared statements over one round trip of unprepared ones: PostgreSQL planned the
    statements of :func:`lock_books` on every event (~0.8 ms), more than the round
    trip saved. (psycopg's pipeline mode would send them together, but it polls the
    socket while it waits, and on a busy 2-core box that spinning cost more CPU than
    it saved.)"""
    out: list[list[tuple[Any, ...]]] = []
    with prepared_cursor() as cur:
        for statement in statements:
            if statement is None:
                out.append([])
                continue
            sql, params = statement
            cur.execute(numbered(sql), params)
            out.append(cur.fetchall())
    return out


def read_books(pool_ids: list[uuid.UUID], probes: list[tuple[uuid.UUID, str]]) -> LockedBooks:
    """For pools already locked (by :func:`lock_books`, or just created): which (pool id,
    idempotency key) ``probes`` are used (no statement without probes), and the pools'
    grants holding credits, in spend order (none without pools)."""
    used, grant_rows = _run_prepared(
        [
            (
                "SELECT t.pool_id, t.idempotency_key"
                " FROM unnest(%s::uuid[], %s::text[]) AS w(pool_id, key)"
                " CROSS JOIN LATERAL (SELECT t.pool_id, t.idempotency_key"
                " FROM credits_credittransaction AS t WHERE t.pool_id = w.pool_id"
                " AND t.idempotency_key = w.key AND t.idempotency_key <> '' LIMIT 1) AS t",
                [[p for p, _ in probes], [k for _, k in probes]],
            )
            if probes
            else None,
            (
                f"SELECT {_select_list(CreditGrant, 'g')} FROM credits_creditgrant AS g"  # noqa: S608
                " WHERE g.pool_id = ANY(%s::uuid[]) AND g.remaining > 0" + _GRANTS_ORDER,
                [pool_ids],
            )
            if pool_ids
            else None,
        ]
    )
    grants: dict[uuid.UUID, list[CreditGrant]] = {pk: [] for pk in pool_ids}
    for grant in _instances(CreditGrant, grant_rows):
        grants[grant.pool_id].append(grant)
    return LockedBooks(pools={}, used_keys=set(used), grants=grants)


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
