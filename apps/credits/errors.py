"""Error codes of the credits app (rendered through ``apps.core.errors``)."""

from __future__ import annotations

from apps.core.errors import Conflict, ValidationFailed

INSUFFICIENT_CREDITS = "insufficient_credits"
ALREADY_REVERSED = "already_reversed"
NOT_REVERSIBLE = "not_reversible"
DENOMINATION_EXISTS = "denomination_exists"
UNKNOWN_DENOMINATION = "unknown_denomination"
DENOMINATION_REQUIRED = "denomination_required"
WEIGHT_CONFLICT = "weight_conflict"
WEIGHT_IN_FORCE = "weight_in_force"
PRICE_CONFLICT = "price_conflict"
ALLOCATION_EXISTS = "allocation_exists"


class InsufficientCredits(Conflict):
    code = INSUFFICIENT_CREDITS
    default_message = "The pool has a hard limit and not enough credits."


class DenominationRequired(ValidationFailed):
    code = DENOMINATION_REQUIRED
    default_message = "The customer has several credit pools; name the denomination."
