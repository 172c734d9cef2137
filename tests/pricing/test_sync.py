"""Catalog sync: idempotent, versioned, history kept, old prices used for old times."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from apps.pricing.costing import TokenUsage, quote_cost
from apps.pricing.models import CATALOG_EPOCH, PriceModel, PriceVersion
from apps.pricing.services import catalog_sync
from apps.pricing.source import SourceError
from apps.pricing.tasks import sync_model_prices
from tests.pricing.conftest import find_model

pytestmark = pytest.mark.django_db

CHANGE_AT = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
USAGE = TokenUsage(input_tokens=1_000_000, output_tokens=0)


def cost(model: str, at: dt.datetime):
    return quote_cost(
        environment_id=uuid.uuid4(), model=model, provider="openai", usage=USAGE, at=at
    )


def test_sync_twice_creates_nothing():
    before = PriceVersion.objects.count()
    first = catalog_sync()
    second = catalog_sync()
    assert PriceVersion.objects.count() == before
    for result in (first, second):
        assert (result.created, result.changed, result.retired) == (0, 0, 0)
        assert result.unchanged == PriceModel.objects.filter(is_listed=True).count() > 2000


def test_the_same_data_from_a_file_is_unchanged(feed_file):
    path = feed_file()
    result = catalog_sync(source=f"file://{path}")
    assert (result.created, result.changed, result.retired) == (0, 0, 0)
    assert result.source == f"file://{path}"


def test_a_changed_price_makes_a_new_version_and_keeps_the_old(feed_file):
    def raise_gpt4o(providers):
        find_model(providers, "openai", "gpt-4o")["prices"]["input_mtok"] = "3.125"

    old = PriceVersion.objects.get(
        model__provider__provider_id="openai", model__model_id="gpt-4o", effective_to=None
    )
    old_snapshot = (old.prices, old.content_hash, old.input_mtok, old.effective_from)
    count = PriceVersion.objects.count()

    result = catalog_sync(source=str(feed_file(raise_gpt4o)), now=CHANGE_AT)
    assert (result.created, result.changed, result.retired) == (0, 1, 0)
    assert PriceVersion.objects.count() == count + 1

    old.refresh_from_db()
    assert (old.prices, old.content_hash, old.input_mtok, old.effective_from) == old_snapshot
    assert old.effective_from == CATALOG_EPOCH and old.effective_to == CHANGE_AT
    new = PriceVersion.objects.get(model=old.model, effective_to=None)
    assert new.effective_from == CHANGE_AT
    assert new.input_mtok == Decimal("3.125") and type(new.input_mtok) is Decimal
    assert new.content_hash != old.content_hash

    before = cost("gpt-4o-2024-08-06", CHANGE_AT - dt.timedelta(seconds=1))
    after = cost("gpt-4o-2024-08-06", CHANGE_AT)
    assert (before.cost_usd, before.price_version_id) == (Decimal("2.5"), old.pk)
    assert (after.cost_usd, after.price_version_id) == (Decimal("3.125"), new.pk)

    again = catalog_sync(source=str(feed_file(raise_gpt4o)), now=CHANGE_AT + dt.timedelta(days=1))
    assert (again.created, again.changed, again.retired) == (0, 0, 0)


def test_a_model_the_source_drops_is_retired_not_deleted(feed_file):
    def drop_o1(providers):
        openai = next(p for p in providers if p["id"] == "openai")
        openai["models"] = [m for m in openai["models"] if m["id"] != "o1"]

    result = catalog_sync(source=str(feed_file(drop_o1)), now=CHANGE_AT)
    assert (result.created, result.changed, result.retired) == (0, 0, 1)
    version = PriceVersion.objects.get(model__model_id="o1", model__provider__provider_id="openai")
    assert version.effective_to == CHANGE_AT
    assert cost("o1", CHANGE_AT - dt.timedelta(days=1)).cost_usd == Decimal("15")
    assert cost("o1", CHANGE_AT).cost_usd is None

    back = catalog_sync(source="", now=CHANGE_AT + dt.timedelta(days=2))
    assert (back.created, back.changed, back.retired) == (1, 0, 0)
    assert cost("o1", CHANGE_AT + dt.timedelta(days=3)).cost_usd == Decimal("15")
    assert cost("o1", CHANGE_AT + dt.timedelta(days=1)).cost_usd is None


def test_every_price_component_is_stored(feed_file):
    version = PriceVersion.objects.get(
        model__provider__provider_id="google", model__model_id="gemini-2.5-pro", effective_to=None
    )
    assert version.has_tiers
    assert version.prices["prices"]["input_mtok"] == {
        "base": "1.25",
        "tiers": [{"start": 200000, "price": "2.5"}],
    }
    assert version.input_mtok == Decimal("1.25")
    sonar = PriceVersion.objects.get(model__model_id="sonar-pro", effective_to=None)
    assert sonar.requests_kcount == Decimal("14")
    deepseek = PriceVersion.objects.get(
        model__provider__provider_id="deepseek", model__model_id="deepseek-chat", effective_to=None
    )
    assert deepseek.is_conditional
    assert "constraint" in json.dumps(deepseek.prices)


def test_bad_sources_are_refused(tmp_path):
    with pytest.raises(SourceError):
        catalog_sync(source=str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a list"}')
    with pytest.raises(SourceError):
        catalog_sync(source=str(bad))
    with pytest.raises(SourceError):
        catalog_sync(source="https://example.com/data.json")


def test_command_and_task_report_counts():
    out = StringIO()
    call_command("sync_model_prices", stdout=out)
    counts = json.loads(out.getvalue())
    assert counts["created"] == counts["changed"] == 0
    assert counts["unchanged"] > 2000
    result = sync_model_prices.run()
    assert result["created"] == 0 and result["unchanged"] == counts["unchanged"]
