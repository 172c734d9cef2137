"""Pricing fixtures: the catalog is synced once per test session and committed.

A per-test fixture drops the in-process caches, so a test that changes the
catalog inside its (rolled back) transaction cannot leak prices into the next.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.core import memo
from apps.pricing.services import catalog_ensure_loaded
from apps.pricing.source import load_source


@pytest.fixture(scope="session")
def price_catalog(django_db_setup: Any, django_db_blocker: Any) -> None:
    """The bundled genai-prices catalog, loaded once (committed; idempotent with --reuse-db)."""
    with django_db_blocker.unblock():
        catalog_ensure_loaded()


@pytest.fixture(autouse=True)
def _fresh_pricing_caches(price_catalog: None) -> Iterator[None]:
    memo.clear_all()
    yield
    memo.clear_all()


@pytest.fixture
def feed_file(tmp_path: Path) -> Callable[..., Path]:
    """Write the bundled catalog, edited by ``edit(providers)``, as a local genai-prices feed."""

    def make(edit: Callable[[list[dict[str, Any]]], None] | None = None) -> Path:
        providers = load_source("")
        if edit is not None:
            edit(providers)
        path = tmp_path / "prices.json"
        path.write_text(json.dumps(providers))
        return path

    return make


def find_model(providers: list[dict[str, Any]], provider_id: str, model_id: str) -> dict[str, Any]:
    provider = next(p for p in providers if p["id"] == provider_id)
    return next(m for m in provider["models"] if m["id"] == model_id)
