"""A customer key (``ck_``) reaches only its own customer: its tools are pinned to it."""

from __future__ import annotations

from apps.core.errors import Forbidden, ValidationFailed
from apps.mcp.calls import current_caller


def pinned(reference: str | None, field: str = "customerReferenceId") -> str:
    """The customer a call is about: a ``ck_`` key's own (naming another is 403
    ``customer_mismatch``, as on the REST API), else ``reference`` (required)."""
    own = current_caller().pinned_reference
    if own is not None:
        if reference is not None and reference != own:
            raise Forbidden("This key is pinned to another customer.", code="customer_mismatch")
        return own
    if not reference:
        raise ValidationFailed(fields={field: ["This field is required."]})
    return reference
