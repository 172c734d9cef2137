"""Error codes of the customers app (rendered through ``apps.core.errors``)."""

from __future__ import annotations

CUSTOMER_EXISTS = "customer_exists"
INVALID_REFERENCE = "invalid_reference"
