"""Who made a credits change: the label stored on ledger entries, and the audit entry of a
change made by hand (a person or a key)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apps.accounts.audit import audit_change
from apps.credits.models import CreditPool

if TYPE_CHECKING:
    from apps.accounts.audit import Actor


def actor_label(actor: Actor | None) -> str:
    """Who made a ledger entry, as stored on it (no foreign key: the ledger is immutable)."""
    if actor is None:
        return "system"
    if actor.user is not None:
        return f"user:{actor.user.pk}"
    if actor.api_key_id is not None:
        return f"key:{actor.api_key_id}"
    return "system"


def _audit(
    pool: CreditPool,
    action: str,
    *,
    target: tuple[str, Any],
    actor: Actor | None,
    detail: dict[str, Any],
) -> None:
    """Audit a change made to a pool by hand (a person or a key)."""
    audit_change(
        environment_id=pool.environment_id,
        action=action,
        target_type=target[0],
        target_id=target[1],
        actor=actor,
        detail={"pool": pool.pk, "denomination": pool.denomination, **detail},
    )
