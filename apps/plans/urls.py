"""API routes of apps.plans, included under /api/."""

from __future__ import annotations

urlpatterns: list = []
