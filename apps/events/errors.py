"""Error codes of the event ledger."""

from __future__ import annotations

from apps.core.errors import Conflict


class DuplicateEvent(Conflict):
    """An event with this idempotency key is already stored in this environment."""

    code = "duplicate_event"
    default_message = "An event with this idempotency key was already recorded."
