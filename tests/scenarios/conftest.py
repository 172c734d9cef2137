"""Scenario fixtures: a customer's life driven through the real services, API and billing
task (see helpers.py), with fresh per-process caches per test (rows roll back between
tests; the in-process copies of plans, prices and weights must forget them too)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from apps.core import memo

from .helpers import Life


def _clear() -> None:
    memo.clear_all()


@pytest.fixture(autouse=True)
def _fresh_process_caches() -> Iterator[None]:
    _clear()
    yield
    _clear()


@pytest.fixture
def life(tenant: Any, django_capture_on_commit_callbacks: Any) -> Life:
    return Life(tenant, django_capture_on_commit_callbacks)
