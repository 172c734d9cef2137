"""API routes of apps.subscriptions, included under /api/."""

from __future__ import annotations

urlpatterns: list = []
