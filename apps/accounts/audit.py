"""Who is acting, and the append-only audit record of what they changed."""

from __future__ import annotations

import dataclasses
import uuid
from typing import TYPE_CHECKING, Any

from apps.core.middleware import client_ip, current_request_id

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
