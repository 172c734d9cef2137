"""Writes for features: create and update one, and get-or-create many for ingestion.

Uniqueness of ``(environment, key)`` is the database's job
(``feature_env_key_unique``): no function here checks before it inserts.
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

from .models import Feature

if TYPE_CHECKING:
    from apps.accounts.audit import Actor
    from apps.accounts.models import Environment

FEATURE_EXISTS = "feature_exists"
INVALID_FEATURE_KEY = "invalid_feature_key"
KEY_MAX_LENGTH = 128
UNIQUE_CONSTRAINT = "feature_env_key_unique"
UPDATABLE_FIELDS = frozenset({"name", "description", "unit_label", "is_enabled", "metadata"})
API_NAMES = {
    "key": "key",
    "name": "name",
    "description": "description",
    "unit_label": "unitLabel",
    "is_enabled": "isEnabled",
    "metadata": "metadata",
}
ENSURE_MAX = 10_000


def clean_feature_key(value: object, *, field: str = "featureKey") -> str:
    """Any non-blank string of at most 128 characters, stored verbatim (no NUL)."""
    problem = None
    if not isinstance(value, str):
        problem = "Must be a string."
    elif not value.strip():
        problem = "May not be blank."
    elif len(value) > KEY_MAX_LENGTH:
        problem = f"At most {KEY_MAX_LENGTH} characters."
    elif "\x00" in value:
        problem = "May not contain NUL characters."
    if problem:
        raise ValidationFailed(fields={field: [problem]}, code=INVALID_FEATURE_KEY)
    return value  # type: ignore[return-value]


def _validate(feature: Feature) -> None:
    try:
        feature.full_clean(
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
def feature_create(
    *,
    environment: Environment,
    key: str,
    name: str,
    description: str = "",
    unit_label: str = "",
    is_enabled: bool = True,
    metadata: dict[str, Any] | None = None,
    actor: Actor,
) -> Feature:
    """Define a feature; a key already defined is 409 ``feature_exists``.

    A feature that only exists because an event named it (source ``event``) is
    claimed instead, as for customers: it takes these details, becomes
    ``manual`` and keeps its id, so usage already recorded stays attached.

    ``actor`` is taken for the audit trail; feature writes are not audited yet.
    """
    key = clean_feature_key(key, field="key")
    now = timezone.now()
    feature = Feature(
        environment=environment,
        key=key,
        name=name,
        description=description,
        unit_label=unit_label,
        is_enabled=is_enabled,
        metadata=metadata if metadata is not None else {},
        source=Feature.Source.MANUAL,
        created_at=now,
        updated_at=now,
    )
    _validate(feature)
    try:
        with transaction.atomic():
            feature.save(force_insert=True)
    except IntegrityError as exc:
        if not _is_unique_violation(exc):
            raise
    else:
        return feature

    changes: dict[str, Any] = {
        "name": name,
        "description": description,
        "unit_label": unit_label,
        "is_enabled": is_enabled,
        "source": Feature.Source.MANUAL,
        "updated_at": now,
    }
    if metadata is not None:
        changes["metadata"] = metadata
    claimed = (
        scoped(Feature, environment.pk)
        .filter(key=key, source=Feature.Source.EVENT)
        .update(**changes)
    )
    if not claimed:
        raise Conflict(
            f"A feature with key '{key}' already exists.",
            code=FEATURE_EXISTS,
            fields={"key": ["Already exists."]},
        )
    return scoped(Feature, environment.pk).get(key=key)


@transaction.atomic
def feature_update(*, feature: Feature, actor: Actor, **fields: Any) -> Feature:
    """Change some of :data:`UPDATABLE_FIELDS`; ``metadata`` is replaced as a whole."""
    unknown = set(fields) - UPDATABLE_FIELDS
    if unknown:
        raise TypeError(f"feature_update() cannot change {', '.join(sorted(unknown))}")
    if not fields:
        return feature
    for name, value in fields.items():
        setattr(feature, name, {} if name == "metadata" and value is None else value)
    feature.updated_at = timezone.now()
    _validate(feature)
    feature.save(update_fields=[*fields, "updated_at"])
    return feature


def features_ensure(*, environment: Environment, keys: Iterable[str]) -> dict[str, uuid.UUID]:
    """Get or create many features at once: ``{key: feature id}``.

    One ``INSERT ... ON CONFLICT DO NOTHING`` (new rows: source ``event``, name
    = key) and one SELECT. Race-safe for the reasons given in
    ``apps.customers.services.customers_ensure``: the unique index serialises
    concurrent inserters, the SELECT is a new snapshot, keys go in sorted
    order so overlapping batches cannot deadlock.
    """
    wanted_keys = sorted({clean_feature_key(key) for key in keys})
    if not wanted_keys:
        return {}
    if len(wanted_keys) > ENSURE_MAX:
        raise ValueError(f"features_ensure takes at most {ENSURE_MAX} keys per call")
    table = Feature._meta.db_table
    found: dict[str, uuid.UUID] = {}
    for _attempt in range(3):
        wanted = [key for key in wanted_keys if key not in found]
        now = timezone.now()
        with connection.cursor() as cur:
            cur.execute(
                f"""
                INSERT INTO {table}
                    (id, environment_id, key, name, description, unit_label, is_enabled,
                     metadata, source, created_at, updated_at)
                SELECT new.id, %s, new.key, left(new.key, 150), '', '', true,
                       '{{}}'::jsonb, %s, %s, %s
                  FROM unnest(%s::uuid[], %s::text[]) WITH ORDINALITY AS new(id, key, n)
                 ORDER BY new.n  -- the sorted order: fixed lock order across callers
                ON CONFLICT (environment_id, key) DO NOTHING
                """,  # noqa: S608 - the table name is ours, values are parameters
                [
                    environment.pk,
                    Feature.Source.EVENT.value,
                    now,
                    now,
                    [uuid.uuid4() for _ in wanted],
                    wanted,
                ],
            )
        found.update(
            scoped(Feature, environment.pk).filter(key__in=wanted).values_list("key", "id")
        )
        if len(found) == len(wanted_keys):
            return found
    raise RuntimeError("features_ensure: features were deleted while being ensured")
