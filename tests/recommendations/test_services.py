"""The findings, hand-computed: margins under the target, the cheaper model repriced with
the catalog, unpriced models; stable ids; dismissal, snooze and resolution."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.analytics.services import margin_settings_update
from apps.events.services import events_recost
from apps.pricing.costing import TokenUsage, quote_cost
from apps.recommendations.advice.common import to_cents
from apps.recommendations.models import Recommendation, finding_id
from apps.recommendations.services import (
    recommendation_apply,
    recommendation_dismiss,
    recommendation_snooze,
)

from .conftest import at, compute, event, findings, ingest, spend, stake

pytestmark = pytest.mark.django_db
Kind = Recommendation.Kind
Status = Recommendation.Status


def test_a_customer_under_the_target_margin_hand_computed(tenant, catalog):
    # R 100, C 90, t 0.70: 90 - 0.3 x 100 = 60.00 a month (a 30-day window is one month).
    client = tenant.api()
    spend(client, "cus_low", "chat", cost="90", revenue="100")
    # 75 % margin, above the 70 % target: no finding.
    spend(client, "cus_fine", "search", cost="25", revenue="100")
    compute(tenant.test)
    customers = findings(tenant.test, Kind.CUSTOMER_MARGIN)
    assert set(customers) == {"customer:cus_low"}
    row = customers["customer:cus_low"]
    assert stake(row) == Decimal("60.00")
    assert row.direction == Recommendation.Direction.PROTECT_MARGIN
    assert row.confidence == Recommendation.Confidence.HIGH
    assert row.evidence["revenue"] == "100" and row.evidence["cost"] == "90"
    assert row.evidence["eventCount"] == 1
    assert row.evidence["marginPct"] == "10"
    assert row.evidence["topContributors"][0]["featureKey"] == "chat"
    assert {a["name"] for a in row.assumptions} >= {"targetMarginPct", "windowDays", "monthScale"}
    assert row.action["type"] == "simulate"
    request = row.action["request"]
    assert request["cohort"] == {"type": "customers", "customerReferenceIds": ["cus_low"]}
    assert 1 <= len(request["scenarios"]) <= 5
    # The feature it runs on is under the target by the same amount; search is not.
    features = findings(tenant.test, Kind.FEATURE_MARGIN)
    assert set(features) == {"feature:chat"}
    assert stake(features["feature:chat"]) == Decimal("60.00")


def test_the_target_margin_and_the_window_scale_the_stake(tenant, catalog):
    spend(tenant.api(), "cus_low", "chat", cost="90", revenue="100")
    margin_settings_update(environment=tenant.test, target_margin_pct=Decimal(50))
    end = timezone.now().replace(minute=0, second=0, microsecond=0)
    # A 15-day window holding the same event: 90 - 0.5 x 100 = 40 over 15 days, 80 a month.
    compute(tenant.test, start=end - dt.timedelta(days=15), end=end, now=end)
    row = findings(tenant.test, Kind.CUSTOMER_MARGIN)["customer:cus_low"]
    assert stake(row) == Decimal("80.00")
    assert row.evidence["targetMarginPct"] == "50"


def test_a_cheaper_model_equals_repricing_the_same_tokens_with_the_catalog(tenant, catalog):
    tokens = {
        "inputTokens": 1_000_000,
        "cacheReadTokens": 200_000,
        "outputTokens": 300_000,
        "reasoningTokens": 0,
    }
    ingest(
        tenant.api(),
        event("cus_a", "chat", when=at(2), model="gpt-4o", modelProvider="openai", **tokens),
        event("cus_b", "chat", when=at(3), model="gpt-4o", modelProvider="openai", **tokens),
    )
    result = compute(tenant.test)
    found = findings(tenant.test, Kind.CHEAPER_MODEL)
    assert list(found) == ["feature:chat|from:openai/gpt-4o|to:openai/gpt-4o-mini"]
    row = next(iter(found.values()))
    usage = TokenUsage(
        input_tokens=2_000_000,
        cache_read_tokens=400_000,
        cache_write_tokens=0,
        output_tokens=600_000,
        reasoning_tokens=0,
        requests=2,
    )
    at_end = result.window.end
    mini = quote_cost(
        environment_id=tenant.test.pk,
        model="gpt-4o-mini",
        provider="openai",
        usage=usage,
        at=at_end,
    )
    big = quote_cost(
        environment_id=tenant.test.pk, model="gpt-4o", provider="openai", usage=usage, at=at_end
    )
    assert mini.cost_usd is not None and big.cost_usd is not None
    # To the last digit: the catalog's own pricing of the same tokens.
    assert Decimal(row.evidence["candidateCost"]) == mini.cost_usd
    assert Decimal(row.evidence["repricedCost"]) == big.cost_usd
    # By hand: 2 x (0.8M x 2.5 + 0.2M x 1.25 + 0.3M x 10) / 1M = 10.50 for gpt-4o,
    # 2 x (0.8M x 0.15 + 0.2M x 0.075 + 0.3M x 0.6) / 1M = 0.63 for gpt-4o-mini.
    assert big.cost_usd == Decimal("10.5") and mini.cost_usd == Decimal("0.63")
    assert stake(row) == to_cents(big.cost_usd - mini.cost_usd) == Decimal("9.87")
    assert row.direction == Recommendation.Direction.SAVE_COST
    assert row.confidence == Recommendation.Confidence.LOW
    assert row.evidence["tokens"] == {
        "input": 2_000_000,
        "cacheRead": 400_000,
        "cacheWrite": 0,
        "output": 600_000,
        "reasoning": 0,
    }
    assert {c["customerReferenceId"] for c in row.evidence["topContributors"]} == {"cus_a", "cus_b"}
    swap = {
        "type": "model_swap",
        "featureKey": "chat",
        "fromModel": "gpt-4o",
        "toModel": "gpt-4o-mini",
        "toProvider": "openai",
    }
    assert row.action["type"] == "simulate"
    assert row.action["request"]["cohort"] == {"type": "all"}
    assert row.action["request"]["scenarios"] == [
        {"name": "gpt-4o-mini for chat", "changes": [swap]}
    ]
    assert set(row.action["request"]["window"]) == {"from", "to"}


def test_an_unpriced_model_gets_a_cost_range_and_a_price_override_that_recosts(tenant, catalog):
    client = tenant.api()
    ingest(
        client,
        event("cus_a", "chat", when=at(2), model="gpt-4o-nova", inputTokens=1_000_000),
        event("cus_a", "chat", when=at(3), model="gpt-4o-nova", outputTokens=1_000_000),
    )
    compute(tenant.test)
    row = findings(tenant.test, Kind.UNPRICED_MODEL)["model:openai/gpt-4o-nova"]
    assert row.evidence["unpricedCount"] == 2
    # Nearest priced sibling: gpt-4o-mini ("gpt-4o-" shared): 1M x 0.15 + 1M x 0.6 = 0.75.
    assert row.evidence["siblings"] == [
        {"provider": "openai", "model": "gpt-4o-mini", "cost": "0.75"}
    ]
    assert row.evidence["costRange"] == {"low": "0.75", "high": "0.75"}
    assert stake(row) == Decimal("0.75")
    assert row.action == {
        "type": "price_override",
        "request": {
            "provider": "openai",
            "model": "gpt-4o-nova",
            "inputCostPerMillion": "0.15",
            "outputCostPerMillion": "0.6",
            "cacheReadCostPerMillion": "0.075",
            "note": "priced as openai/gpt-4o-mini (recommendation)",
        },
        "complete": True,
    }
    # The action's body is what the overrides API takes; re-costing then prices the events.
    response = client.post("/api/model-price-overrides", row.action["request"], format="json")
    assert response.status_code == 201, response.content
    events_recost(actor="test", environment_id=tenant.test.pk)
    compute(tenant.test)
    row.refresh_from_db()
    assert row.status == Status.RESOLVED


def test_ids_are_stable_across_recomputes(tenant, catalog):
    client = tenant.api()
    spend(client, "cus_low", "chat", cost="90", revenue="100")
    compute(tenant.test)
    first = {row.subject: row.pk for row in findings(tenant.test).values()}
    assert first["customer:cus_low"] == finding_id(
        tenant.test.pk, Kind.CUSTOMER_MARGIN, "customer:cus_low"
    )
    spend(client, "cus_low", "chat", cost="10")
    compute(tenant.test)
    again = {row.subject: row.pk for row in findings(tenant.test).values()}
    assert again == first
    assert stake(findings(tenant.test)["customer:cus_low"]) == Decimal("70.00")
    # The same subject in another environment is another finding.
    assert (
        finding_id(tenant.live.pk, Kind.CUSTOMER_MARGIN, "customer:cus_low") not in again.values()
    )


def test_a_dismissal_sticks_until_the_money_at_stake_doubles(tenant, catalog):
    client = tenant.api()
    spend(client, "cus_low", "chat", cost="90", revenue="100")
    compute(tenant.test)
    row = findings(tenant.test)["customer:cus_low"]
    recommendation_dismiss(recommendation=row)
    assert row.decided_at_stake == Decimal("60.00")
    spend(client, "cus_low", "chat", cost="59.99")  # 119.99: not yet twice 60
    compute(tenant.test)
    row.refresh_from_db()
    assert (row.status, stake(row)) == (Status.DISMISSED, Decimal("119.99"))
    spend(client, "cus_low", "chat", cost="0.01")  # 120.00: doubled
    compute(tenant.test)
    row.refresh_from_db()
    assert (row.status, stake(row)) == (Status.OPEN, Decimal("120.00"))
    assert row.decided_at_stake is None


def test_a_snooze_ends_at_its_time_or_when_the_stake_doubles(tenant, catalog):
    client = tenant.api()
    spend(client, "cus_low", "chat", cost="90", revenue="100")
    compute(tenant.test)
    rows = findings(tenant.test)
    row, feature = rows["customer:cus_low"], rows["feature:chat"]
    now = timezone.now()
    recommendation_snooze(recommendation=row, until=now + dt.timedelta(days=3), now=now)
    recommendation_snooze(recommendation=feature, until=now + dt.timedelta(days=3), now=now)
    compute(tenant.test, now=now + dt.timedelta(days=1))
    row.refresh_from_db()
    assert row.status == Status.SNOOZED
    compute(tenant.test, now=now + dt.timedelta(days=4))
    row.refresh_from_db()
    assert row.status == Status.OPEN and row.snoozed_until is None
    # The feature's snooze is cut short by a doubled stake.
    feature.refresh_from_db()
    assert feature.status == Status.OPEN


def test_a_finding_no_longer_found_is_resolved_and_comes_back_open(tenant, catalog):
    spend(tenant.api(), "cus_low", "chat", cost="90", revenue="100")
    compute(tenant.test)
    row = findings(tenant.test)["customer:cus_low"]
    margin_settings_update(environment=tenant.test, target_margin_pct=Decimal(5))
    compute(tenant.test)
    row.refresh_from_db()
    assert row.status == Status.RESOLVED
    margin_settings_update(environment=tenant.test, target_margin_pct=Decimal(70))
    compute(tenant.test)
    row.refresh_from_db()
    assert row.status == Status.OPEN


def test_an_applied_finding_is_checked_after_7_and_30_days(tenant, catalog):
    spend(tenant.api(), "cus_low", "chat", cost="90", revenue="100")
    compute(tenant.test)
    row = findings(tenant.test)["customer:cus_low"]
    now = timezone.now()
    recommendation_apply(recommendation=row, now=now)
    compute(tenant.test, now=now + dt.timedelta(days=2))
    row.refresh_from_db()
    assert row.checks == []
    # Eight days on the event is still in the window: nothing changed, nothing realised.
    compute(tenant.test, now=now + dt.timedelta(days=8))
    row.refresh_from_db()
    assert row.status == Status.APPLIED
    assert [(c["afterDays"], c["predicted"], c["realised"]) for c in row.checks] == [
        (7, "60.00", "0.00")
    ]
    # Thirty-one days on the event has left the window: the whole prediction realised.
    compute(tenant.test, now=now + dt.timedelta(days=31))
    row.refresh_from_db()
    assert [(c["afterDays"], c["realised"]) for c in row.checks] == [(7, "0.00"), (30, "60.00")]


def test_each_environment_computes_its_own(tenant, outsider, catalog):
    spend(tenant.api(), "cus_low", "chat", cost="90", revenue="100")
    compute(tenant.test)
    compute(tenant.live)
    compute(outsider.test)
    assert findings(tenant.live) == {}
    assert findings(outsider.test) == {}
    assert "customer:cus_low" in findings(tenant.test)
