"""The public quickstart's event: a model and ``usageUnits: response.usage.total_tokens``, no
token split. Its cost is the catalog's price of ``usageUnits`` input tokens, marked as an
estimate everywhere it shows (the answer, the API, the event page, the CSV, the overview's
figures), and exact once the caller sends the split."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from apps.core import memo
from apps.events.models import Event, HourlyRollup
from apps.events.prices import price_event
from apps.events.rendering import EXACT_WITH
from apps.pricing.services import override_create

from .conftest import rollup_mismatches

pytestmark = pytest.mark.django_db

CLIENT_EVENTS = "/api/v1/client/events"
# gpt-4o input: $2.50 per million tokens (tests/events/conftest.py CATALOG).
INPUT_PRICE = Decimal("2.5") / 1_000_000


def quickstart(api, units, **extra) -> dict:
    body = {
        "eventIdempotencyKey": str(uuid.uuid4()),
        "eventName": "chat_completion",
        "customerReferenceId": "cus_123",
        "featureKey": "ai_summarization",
        "costInput": {"model": "gpt-4o", "modelProvider": "openai"},
        **({} if units is None else {"usageUnits": units}),
        **extra,
    }
    response = api.post(CLIENT_EVENTS, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_total_tokens_are_priced_as_input_and_marked_estimated_then_exact_with_a_split(
    tenant, catalog
):
    api = tenant.api()
    estimated = quickstart(api, 1847)
    assert Decimal(estimated["costAmount"]) == 1847 * INPUT_PRICE  # 0.0046175
    assert estimated["costSource"] == "estimated"
    assert estimated["unpricedReason"] is None
    assert estimated["costEstimate"] == {
        "basis": "usage_units_as_input_tokens",
        "inputTokens": 1847,
        "exactWith": EXACT_WITH,
    }
    assert "inputTokens" in estimated["costEstimate"]["exactWith"]

    # The same call re-sent with the split, under another idempotency key: exact.
    exact = quickstart(api, 1847, inputTokens=1500, outputTokens=347)
    assert exact["costSource"] == "catalog" and exact["costEstimate"] is None
    assert Decimal(exact["costAmount"]) == 1500 * INPUT_PRICE + 347 * Decimal(10) / 1_000_000

    # The stored event and the events API say the same.
    stored = Event.objects.get(id=estimated["id"])
    assert (stored.cost_source, stored.cost_usd) == ("estimated", 1847 * INPUT_PRICE)
    listed = {item["id"]: item for item in api.get("/api/events").json()["items"]}
    assert listed[estimated["id"]]["costSource"] == "estimated"
    assert listed[estimated["id"]]["costEstimate"]["inputTokens"] == 1847
    assert listed[exact["id"]]["costEstimate"] is None

    # The rollups count the estimate apart (and stay equal to the raw events).
    rollup = HourlyRollup.objects.get(environment=tenant.test)
    assert rollup.estimated_cost_usd == 1847 * INPUT_PRICE
    assert rollup.cost_usd == Decimal(estimated["costAmount"]) + Decimal(exact["costAmount"])
    assert rollup_mismatches() == []

    # The overview's figures carry the estimated part separately.
    overview = api.get("/api/analytics/overview").json()
    assert Decimal(overview["estimatedCost"]) == 1847 * INPUT_PRICE
    assert Decimal(overview["cost"]) == rollup.cost_usd


@pytest.mark.parametrize("units", ["1847.5", "0"])
def test_units_that_are_not_a_token_count_stay_unpriced(tenant, catalog, units):
    answer = quickstart(tenant.api(), units)
    assert answer["costAmount"] is None
    assert (answer["costSource"], answer["unpricedReason"]) == ("unpriced", "no_token_counts")
    assert answer["costEstimate"] is None


def test_an_unknown_model_is_still_unknown_never_zero(tenant, catalog):
    answer = quickstart(tenant.api(), 1000, costInput={"model": "acme-llm-7"})
    assert answer["costAmount"] is None and answer["costSource"] == "unpriced"


def test_the_event_page_the_csv_and_the_overview_page_say_estimate(tenant, catalog):
    answer = quickstart(tenant.api(), 1000)
    web = Client()
    web.force_login(tenant.owner)
    page = web.get(f"/dashboard/events/{answer['id']}/").content.decode()
    assert 'data-testid="cost-estimated"' in page
    assert "priced as input tokens" in page

    response = web.get("/dashboard/export/events.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0]["costSource"] == "estimated"
    assert '"basis":"usage_units_as_input_tokens"' in rows[0]["costEstimate"]

    overview = web.get("/dashboard/").content.decode()
    assert 'data-testid="estimated-cost"' in overview
    assert 'data-estimated-cost="0.0025"' in overview  # 1,000 x $2.50 / 1M


def test_recost_reprices_an_estimate_and_keeps_the_rollups_in_step(tenant, catalog):
    estimated = quickstart(tenant.api(), 2000)
    # An event stored without token counts nor usageUnits (the SDK's "usage missing"):
    # whether its units were tokens is unknown, so re-costing leaves it unpriced.
    unknown = quickstart(tenant.api(), None)
    assert unknown["costSource"] == "unpriced" and unknown["costEstimate"] is None
    # A 20 % discount on the catalog: the estimate is re-estimated at the new price.
    override_create(
        environment=tenant.test, provider="openai", model="gpt-4o", discount_percent=Decimal(20)
    )
    memo.clear_all()
    call_command("recost", "--env", str(tenant.test.pk), "--all", stdout=io.StringIO())
    event = Event.objects.get(id=estimated["id"])
    assert (event.cost_source, event.cost_usd) == ("estimated", 2000 * INPUT_PRICE * 8 / 10)
    assert Event.objects.get(id=unknown["id"]).cost_usd is None
    rollup = HourlyRollup.objects.get(environment=tenant.test)
    assert (rollup.unpriced_count, rollup.estimated_cost_usd) == (1, 2000 * INPUT_PRICE * 8 / 10)
    assert rollup_mismatches() == []


def test_price_event_and_the_batch_pricer_agree_on_an_estimate(tenant, catalog):
    from apps.events.prices import BatchPricer

    at = timezone.now() - dt.timedelta(minutes=1)
    kwargs = {
        "model": "gpt-4o",
        "provider": "openai",
        "at": at,
        "explicit_cost": None,
        "usage_units": Decimal(1234),
        "input_tokens": None,
        "output_tokens": None,
        "cache_read_tokens": None,
        "cache_write_tokens": None,
        "reasoning_tokens": None,
    }
    one = price_event(environment_id=tenant.test.pk, **kwargs)
    batch = BatchPricer(tenant.test.pk).price(**kwargs)
    assert one == batch
    assert one.source == "estimated" and one.cost_usd == 1234 * INPUT_PRICE
