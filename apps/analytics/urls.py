"""Observe read API routes, included under /api/."""

from __future__ import annotations

urlpatterns: list = []
