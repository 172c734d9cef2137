"""Writes for customers: create and update one, and get-or-create many for ingestion.

Uniqueness of ``(environment, reference_id)`` is the database's job
(``customer_env_ref_unique``): no function here checks before it inserts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.core.errors import Conflict, ValidationFailed
from apps.core.tenancy import scoped

from . import errors
from .models import Customer

if TYPE_CHECKING:
    from apps.accounts.audit import Actor
    from apps.accounts.models import Environment

REFERENCE_MAX_LENGTH = 255
UNIQUE_CONSTRAINT = "customer_env_ref_unique"
# Fields a caller may change after creation; the reference is the identity and never changes.
UPDATABLE_FIELDS = frozenset(
    {"email", "first_name", "last_name", "phone", "metadata", "stripe_customer_id"}
)
# Model field -> the name the API and its error envelope use.
API_NAMES = {
    "reference_id": "customerReferenceId",
    "email": "email",
    "first_name": "firstName",
    "last_name": "lastName",
    "phone": "phoneNumber",
    "metadata": "metadata",
    "stripe_customer_id": "stripeCustomerId",
}
# Per-statement cap for ``customers_ensure``: one event batch names far fewer customers.
ENSURE_MAX = 10_000


def clean_reference_id(value: object, *, field: str = "customerReferenceId") -> str:
    """The integrator's id, stored verbatim: any non-blank string of at most 255 characters.

    NUL is refused because PostgreSQL text cannot hold it (it would be a 500, not a 400).
    """
    if not isinstance(value, str):
        raise ValidationFailed(fields={field: ["Must be a string."]}, code=errors.INVALID_REFERENCE)
    if not value.strip():
        raise ValidationFailed(fields={field: ["May not be blank."]}, code=errors.INVALID_REFERENCE)
    if len(value) > REFERENCE_MAX_LENGTH:
        raise ValidationFailed(
            fields={field: [f"At most {REFERENCE_MAX_LENGTH} characters."]},
            code=errors.INVALID_REFERENCE,
        )
    if "\x00" in value:
        raise ValidationFailed(
            fields={field: ["May not contain NUL characters."]}, code=errors.INVALID_REFERENCE
        )
    return value


def _validate(customer: Customer) -> None:
    """Field formats (email, lengths) for every caller, not only the API's serializer."""
    try:
        # No queries: the environment (a foreign key) and uniqueness are the database's job.
        customer.full_clean(
            exclude=["environment"], validate_unique=False, validate_constraints=False
        )
    except DjangoValidationError as exc:
        raise ValidationFailed(
            fields={
                API_NAMES.get(name, name): list(msgs) for name, msgs in exc.message_dict.items()
            }
        ) from None


def _is_unique_violation(exc: IntegrityError) -> bool:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) == UNIQUE_CONSTRAINT


@transaction.atomic
def customer_create(
    *,
    environment: Environment,
    reference_id: str,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    phone: str = "",
    metadata: dict[str, Any] | None = None,
    stripe_customer_id: str = "",
    actor: Actor,
) -> Customer:
    """Register a customer; a reference already registered is 409 ``customer_exists``.

    A customer that only exists because an event named it (source ``event``) is
    *claimed* instead: it takes these details and becomes ``manual``, keeping its
    id and history. The quickstart promises exactly this ("send events with just
    a customerReferenceId and create customers later"). The claim is one
    conditional UPDATE, so of two racing creates only one wins; the other is 409.

    ``actor`` is taken for the audit trail; customer writes are not audited yet
    (``AuditEntry.Action`` has no customer actions).
    """
    reference_id = clean_reference_id(reference_id)
    now = timezone.now()
    customer = Customer(
        environment=environment,
        reference_id=reference_id,
        email=email,
        first_name=first_name,
        last_name=last_name,
        phone=phone,
        metadata=metadata if metadata is not None else {},
        stripe_customer_id=stripe_customer_id,
        source=Customer.Source.MANUAL,
        created_at=now,
        updated_at=now,
    )
    _validate(customer)
    try:
        with transaction.atomic():
            customer.save(force_insert=True)
    except IntegrityError as exc:
        if not _is_unique_violation(exc):
            raise
    else:
        return customer

    changes: dict[str, Any] = {
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "phone": phone,
        "source": Customer.Source.MANUAL,
        "updated_at": now,
    }
    # An event may have set these; keep them unless the caller gives new ones.
    if metadata is not None:
        changes["metadata"] = metadata
    if stripe_customer_id:
        changes["stripe_customer_id"] = stripe_customer_id
    claimed = (
        scoped(Customer, environment.pk)
        .filter(reference_id=reference_id, source=Customer.Source.EVENT)
        .update(**changes)
    )
    if not claimed:
        raise Conflict(
            f"A customer with reference '{reference_id}' already exists.",
            code=errors.CUSTOMER_EXISTS,
            fields={"customerReferenceId": ["Already exists."]},
        )
    return scoped(Customer, environment.pk).get(reference_id=reference_id)


@transaction.atomic
def customer_update(*, customer: Customer, actor: Actor, **fields: Any) -> Customer:
    """Change some of :data:`UPDATABLE_FIELDS`; ``metadata`` is replaced as a whole."""
    unknown = set(fields) - UPDATABLE_FIELDS
    if unknown:
        raise TypeError(f"customer_update() cannot change {', '.join(sorted(unknown))}")
    if not fields:
        return customer
    for name, value in fields.items():
        setattr(customer, name, {} if name == "metadata" and value is None else value)
    customer.updated_at = timezone.now()
    _validate(customer)
    customer.save(update_fields=[*fields, "updated_at"])
    return customer


def customers_ensure(
    *, environment: Environment, reference_ids: Iterable[str]
) -> dict[str, uuid.UUID]:
    """Get or create many customers at once: ``{reference_id: customer id}``.

    For the ingestion hot path: one ``INSERT ... ON CONFLICT DO NOTHING`` (new
    rows get source ``event``) and one SELECT, whatever the number of refs.

    Race-safe under READ COMMITTED: a concurrent inserter of the same ref makes
    our INSERT wait on the unique index until it commits, then skip the row;
    the SELECT, a new statement with a new snapshot, sees it. References are
    inserted in sorted order so two overlapping batches lock in the same order
    and cannot deadlock. Not wrapped in ``atomic``: both statements are
    idempotent, and a savepoint would add two round trips when nested.
    """
    refs = sorted({clean_reference_id(ref) for ref in reference_ids})
    if not refs:
        return {}
    if len(refs) > ENSURE_MAX:
        raise ValueError(f"customers_ensure takes at most {ENSURE_MAX} references per call")
    table = Customer._meta.db_table
    found: dict[str, uuid.UUID] = {}
    # A second round only if a row vanished (deleted) between the two statements.
    for _attempt in range(3):
        wanted = [ref for ref in refs if ref not in found]
        now = timezone.now()
        with connection.cursor() as cur:
            cur.execute(
                f"""
                INSERT INTO {table}
                    (id, environment_id, reference_id, email, first_name, last_name, phone,
                     metadata, stripe_customer_id, source, created_at, updated_at)
                SELECT new.id, %s, new.ref, '', '', '', '', '{{}}'::jsonb, '', %s, %s, %s
                  FROM unnest(%s::uuid[], %s::text[]) WITH ORDINALITY AS new(id, ref, n)
                 ORDER BY new.n  -- the sorted order: fixed lock order across callers
                ON CONFLICT (environment_id, reference_id) DO NOTHING
                """,  # noqa: S608 - the table name is ours, values are parameters
                [
                    environment.pk,
                    Customer.Source.EVENT.value,
                    now,
                    now,
                    [uuid.uuid4() for _ in wanted],
                    wanted,
                ],
            )
        found.update(
            scoped(Customer, environment.pk)
            .filter(reference_id__in=wanted)
            .values_list("reference_id", "id")
        )
        if len(found) == len(refs):
            return found
    raise RuntimeError("customers_ensure: customers were deleted while being ensured")
