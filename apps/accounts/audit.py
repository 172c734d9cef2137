"""Who is acting, and the append-only audit record of what they changed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from apps.core.middleware import client_ip, current_request_id
from apps.core.money import decimal_str

from .models import AuditEntry, Environment, Organization, User

if TYPE_CHECKING:
    from django.http import HttpRequest


@dataclasses.dataclass(frozen=True)
class Actor:
    """The person or key behind a change, and where the request came from."""

    user: User | None = None
    api_key_id: uuid.UUID | None = None
    ip: str | None = None

    @classmethod
    def from_request(cls, request: HttpRequest) -> Actor:
        user = getattr(request, "user", None)
        key = getattr(request, "auth", None)
        ip = client_ip(request)
        return cls(
            user=user if user is not None and user.is_authenticated else None,
            api_key_id=getattr(key, "id", None),
            ip=None if ip == "unknown" else ip,
        )

    @classmethod
    def system(cls) -> Actor:
        return cls()


def audit_record(
    *,
    organization: Organization,
    action: str,
    target_type: str,
    target_id: object,
    actor: Actor,
    environment: Environment | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    return AuditEntry.objects.create(
        organization=organization,
        environment=environment,
        actor_user=actor.user,
        actor_key_id=actor.api_key_id,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        detail=detail or {},
        ip=actor.ip,
        request_id=current_request_id(),
    )


def jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it: exact decimal strings, ISO times, ids as strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return decimal_str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def changes_of(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """``{field: [before, after]}`` for the fields whose value changed (as JSON sees them)."""
    old, new = jsonable(before), jsonable(after)
    return {k: [old.get(k), new.get(k)] for k in new if old.get(k) != new.get(k)}


def audit_change(
    *,
    environment: Environment | None = None,
    environment_id: Any = None,
    action: str,
    target_type: str,
    target_id: object,
    actor: Actor | None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """The audit entry of a change inside an environment (give the environment, or its id):
    the organization comes from it, ``actor`` None is the system, ``detail`` is made JSON
    (``before -> after`` pairs as ``[before, after]``, see :func:`changes_of`)."""
    if environment is not None:
        environment_id, organization_id = environment.pk, environment.organization_id
    else:
        organization_id = (
            Environment.objects.filter(pk=environment_id)
            .values_list("organization_id", flat=True)
            .get()
        )
    actor = actor or Actor.system()
    return AuditEntry.objects.create(
        organization_id=organization_id,
        environment_id=environment_id,
        actor_user=actor.user,
        actor_key_id=actor.api_key_id,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        detail=jsonable(detail or {}),
        ip=actor.ip,
        request_id=current_request_id(),
    )
