"""Webhook handlers and billing hooks of the pass-through mode (registered at import,
from ``StripeSyncConfig.ready``)."""

from __future__ import annotations
