"""Billing fixtures: fresh in-process caches per test (rows roll back between tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apps.credits import weights
from apps.events import resolve
from apps.pricing import catalog as pricing_catalog


@pytest.fixture(autouse=True)
def _fresh_process_caches() -> Iterator[None]:
    pricing_catalog.clear_local_caches()
    resolve.clear_cache()
    weights.clear_local_cache()
    yield
    pricing_catalog.clear_local_caches()
    resolve.clear_cache()
