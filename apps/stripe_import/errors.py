"""Error codes of the Stripe import (rendered through ``apps.core.errors``)."""

from __future__ import annotations

# The environment's Stripe mode is not ``import`` (409).
STRIPE_MODE_NOT_IMPORT = "stripe_mode_not_import"
# No Stripe key is connected in this environment (409; the code apps.stripe_sync uses).
STRIPE_NOT_CONNECTED = "stripe_not_connected"
# An import of this environment is already pending or running (409, with its jobId).
IMPORT_RUNNING = "stripe_import_running"
