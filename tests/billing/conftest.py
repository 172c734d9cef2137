"""Billing fixtures: fresh in-process caches per test (rows roll back between tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apps.core import memo


@pytest.fixture(autouse=True)
def _fresh_process_caches() -> Iterator[None]:
    memo.clear_all()
    yield
    memo.clear_all()
