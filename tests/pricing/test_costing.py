"""quote_cost: equal to genai-prices, resolves like genai-prices, overrides in order, no float."""

from __future__ import annotations

import datetime as dt
import uuid
import warnings
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from genai_prices.data import providers as bundled_providers

from apps.core import memo
from apps.core.money import quantize_event_amount
from apps.pricing.catalog import InvalidUsage
from apps.pricing.costing import (
    CostQuote,
    QuoteRequest,
    TokenUsage,
    infer_provider,
    quote_cost,
    quote_costs,
)
from apps.pricing.models import PriceVersion
from apps.pricing.services import override_create, override_delete

pytestmark = pytest.mark.django_db

AT = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def genai_total(model: str, provider: str | None, usage: TokenUsage, at: dt.datetime) -> Decimal:
    result = calc_price(
        Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            output_reasoning_tokens=usage.reasoning_tokens,
        ),
        model,
        provider_id=provider,
        genai_request_timestamp=at,
    )
    assert isinstance(result.total_price, Decimal)
    return result.total_price


def quote(
    model: str | None,
    provider: str | None = None,
    usage: TokenUsage | None = None,
    at: dt.datetime = AT,
    environment_id: uuid.UUID | None = None,
) -> CostQuote:
    return quote_cost(
        environment_id=environment_id or uuid.uuid4(),
        model=model,
        provider=provider,
        usage=usage or TokenUsage(input_tokens=1000, output_tokens=500),
        at=at,
    )


def assert_decimal_quote(q: CostQuote) -> None:
    assert q.cost_usd is None or type(q.cost_usd) is Decimal
    assert not isinstance(q.cost_usd, float)


# Each case: model, provider, usage, request time.
SPREAD = [
    ("gpt-4o", "openai", TokenUsage(input_tokens=1234, output_tokens=567), AT),
    (
        "gpt-4o",
        "openai",
        TokenUsage(input_tokens=5000, output_tokens=10, cache_read_tokens=4096),
        AT,
    ),
    ("gpt-4o-mini", None, TokenUsage(input_tokens=1, output_tokens=1), AT),
    (
        "claude-sonnet-4-20250514",
        "anthropic",
        TokenUsage(
            input_tokens=12_000, output_tokens=800, cache_read_tokens=8000, cache_write_tokens=2000
        ),
        AT,
    ),
    (
        "claude-3-5-haiku-latest",
        None,
        TokenUsage(input_tokens=3000, output_tokens=300, cache_write_tokens=3000),
        AT,
    ),
    # Google, below and above the 200k-token context tier
    ("gemini-2.5-pro", "google", TokenUsage(input_tokens=199_999, output_tokens=1000), AT),
    (
        "gemini-2.5-pro",
        "google",
        TokenUsage(input_tokens=250_000, output_tokens=1000, cache_read_tokens=50_000),
        AT,
    ),
    # Reasoning: o3 (reasoning inside output, price cut on 2025-06-10), before and after the cut
    (
        "o3",
        "openai",
        TokenUsage(input_tokens=800, output_tokens=4000, reasoning_tokens=3500),
        dt.datetime(2025, 6, 9, 23, 59, tzinfo=dt.UTC),
    ),
    (
        "o3-2025-04-16",
        None,
        TokenUsage(input_tokens=800, output_tokens=4000, reasoning_tokens=3500),
        AT,
    ),
    # A reasoning price of its own
    (
        "sonar-deep-research",
        "perplexity",
        TokenUsage(input_tokens=1000, output_tokens=9000, reasoning_tokens=6000),
        AT,
    ),
    # Per-request price, and time-of-day prices (peak vs off-peak)
    ("sonar-pro", "perplexity", TokenUsage(input_tokens=100, output_tokens=100), AT),
    ("deepseek-chat", "deepseek", TokenUsage(input_tokens=10_000, output_tokens=2000), AT),
    (
        "deepseek-chat",
        "deepseek",
        TokenUsage(input_tokens=10_000, output_tokens=2000, cache_read_tokens=9000),
        dt.datetime(2026, 11, 20, 17, 0, tzinfo=dt.UTC),
    ),
]


@pytest.mark.parametrize(("model", "provider", "usage", "at"), SPREAD)
def test_cost_equals_genai_prices(model, provider, usage, at):
    q = quote(model, provider, usage, at)
    expected = genai_total(model, provider, usage, at)
    assert q.source == "catalog"
    assert type(q.cost_usd) is Decimal
    assert q.cost_usd == expected  # exact, not approximately
    assert q.cost_usd == quantize_event_amount(expected)
    assert q.cost_usd.as_tuple().exponent == -12
    version = PriceVersion.objects.select_related("model__provider").get(pk=q.price_version_id)
    assert version.model.model_id == q.model
    assert version.effective_to is None


def test_every_bundled_model_equals_genai_prices():
    """The compiled arithmetic against the library, over the whole bundled catalog."""
    usages = [
        TokenUsage(input_tokens=123_456, output_tokens=7890),
        TokenUsage(
            input_tokens=300_001,
            output_tokens=5000,
            cache_read_tokens=100_000,
            cache_write_tokens=20_000,
            reasoning_tokens=1000,
        ),
    ]
    times = [AT, dt.datetime(2024, 1, 1, 2, 0, tzinfo=dt.UTC)]
    env = uuid.uuid4()
    compared = refused = 0
    for provider in bundled_providers:
        for model in provider.models:
            for usage in usages:
                for at in times:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        try:
                            expected = genai_total(model.id, provider.id, usage, at)
                        except LookupError:
                            # genai-prices cannot find it (an id its own rule does not match):
                            # neither can we, and unpriced is not zero.
                            q = quote(model.id, provider.id, usage, at, environment_id=env)
                            assert (q.cost_usd, q.source) == (None, "unpriced")
                            refused += 1
                            continue
                        except ValueError:
                            with pytest.raises(InvalidUsage):
                                quote(model.id, provider.id, usage, at, environment_id=env)
                            refused += 1
                            continue
                    q = quote(model.id, provider.id, usage, at, environment_id=env)
                    assert q.cost_usd == quantize_event_amount(expected), (provider.id, model.id)
                    assert type(q.cost_usd) is Decimal
                    compared += 1
    assert compared > 8000
    assert refused < compared / 10


def test_a_tier_above_the_context_size_changes_the_rate():
    small = quote("gemini-2.5-pro", "google", TokenUsage(input_tokens=200_000, output_tokens=0))
    large = quote("gemini-2.5-pro", "google", TokenUsage(input_tokens=200_001, output_tokens=0))
    assert small.cost_usd == Decimal("0.25")  # $1.25 / MTok
    assert large.cost_usd == Decimal("0.5000025")  # $2.50 / MTok on every token


def test_dated_snapshot_resolves_to_its_base_model():
    q = quote("claude-sonnet-4-20250514")
    assert q.model == "claude-sonnet-4-0"
    assert q.provider == "anthropic"
    dated = quote("gpt-4o-2024-08-06", "openai")
    assert dated.model == "gpt-4o"
    assert dated.price_version_id == quote("gpt-4o", "openai").price_version_id
    # Compact dates (LiteLLM style) resolve as genai-prices resolves them.
    assert quote("GPT-4o-2024-08-06").model == "gpt-4o"


def test_provider_is_inferred_when_absent():
    assert infer_provider("claude-3-5-haiku-latest") == "anthropic"
    assert infer_provider("gpt-4o") == "openai"
    assert infer_provider("gemini-2.5-pro") == "google"
    assert infer_provider("no-such-model-xyz") is None
    q = quote("gpt-4o", None)
    assert (q.provider, q.model, q.source) == ("openai", "gpt-4o", "catalog")


def test_unknown_model_is_unpriced_never_zero():
    for model, provider in [
        ("my-fine-tune-v7", None),
        ("gpt-4o", "no-such-provider"),
        ("claude-3-5-haiku-latest", "openai"),
        ("", None),
        (None, "openai"),
    ]:
        q = quote(model, provider)
        assert q.cost_usd is None
        assert q.source == "unpriced"
        assert q.price_version_id is None
    assert quote("gpt-99-turbo").provider == "openai"  # inferred even though unpriced


def test_a_date_before_the_catalog_window_of_a_closed_version_is_unpriced():
    q = quote("gpt-4o", "openai")
    PriceVersion.objects.filter(pk=q.price_version_id).update(
        effective_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    )
    memo.clear_all()  # forget the cached catalog: the version's window changed
    early = quote("gpt-4o", "openai", at=dt.datetime(2025, 12, 31, tzinfo=dt.UTC))
    assert early.cost_usd is None and early.source == "unpriced"
    assert early.model == "gpt-4o"


def test_requests_price_per_request():
    one = quote("sonar-pro", "perplexity", TokenUsage(input_tokens=0, output_tokens=0))
    three = quote(
        "sonar-pro", "perplexity", TokenUsage(input_tokens=0, output_tokens=0, requests=3)
    )
    assert one.cost_usd == Decimal("0.014")  # $14 per 1,000 requests
    assert three.cost_usd == Decimal("0.042")


@pytest.mark.parametrize(
    "usage",
    [
        TokenUsage(input_tokens=100, output_tokens=10, cache_read_tokens=101),
        TokenUsage(input_tokens=100, output_tokens=10, cache_read_tokens=60, cache_write_tokens=60),
        TokenUsage(input_tokens=100, output_tokens=10, reasoning_tokens=11),
        TokenUsage(input_tokens=-1, output_tokens=10),
        TokenUsage(input_tokens=1.5, output_tokens=10),  # type: ignore[arg-type]
    ],
)
def test_inconsistent_usage_is_refused(usage):
    with pytest.raises(InvalidUsage):
        quote("gpt-4o", "openai", usage)


def test_naive_time_is_utc():
    naive = quote("o3", "openai", at=dt.datetime(2025, 6, 10, 0, 0))
    aware = quote("o3", "openai", at=dt.datetime(2025, 6, 10, 0, 0, tzinfo=dt.UTC))
    before = quote("o3", "openai", at=dt.datetime(2025, 6, 9, 23, 59, tzinfo=dt.UTC))
    assert naive.cost_usd == aware.cost_usd != before.cost_usd


class TestOverrides:
    USAGE = TokenUsage(
        input_tokens=1_000_000,
        output_tokens=100_000,
        cache_read_tokens=400_000,
        cache_write_tokens=0,
    )

    def test_precedence_rate_then_model_discount_then_provider_discount_then_catalog(self, tenant):
        env = tenant.test
        catalog = quote("gpt-4o-2024-08-06", "openai", self.USAGE)
        assert catalog.cost_usd == Decimal("3")  # 0.6M*$2.5 + 0.4M*$1.25 (cached) + 0.1M*$10

        provider_off = override_create(
            environment=env, provider="openai", discount_percent=Decimal("10")
        )
        model_off = override_create(
            environment=env, model="gpt-4o", discount_percent=Decimal("20.5")
        )
        rate = override_create(
            environment=env,
            provider="OpenAI",
            model="GPT-4o",
            input_mtok=Decimal("1"),
            output_mtok=Decimal("3"),
            cache_read_mtok=Decimal("0.1"),
            per_request_usd=Decimal("0.0001"),
        )

        def q() -> CostQuote:
            return quote("gpt-4o-2024-08-06", "openai", self.USAGE, environment_id=env.pk)

        first = q()
        assert first.source == "override_rate"
        assert first.cost_usd == Decimal("0.6") + Decimal("0.04") + Decimal("0.3") + Decimal(
            "0.0001"
        )
        assert first.price_version_id is None
        assert (first.provider, first.model) == ("openai", "gpt-4o")

        override_delete(override=rate)
        second = q()
        assert second.source == "override_discount"
        assert second.cost_usd == Decimal("2.385")  # 3 * (1 - 0.205)
        assert second.price_version_id == catalog.price_version_id

        override_delete(override=model_off)
        third = q()
        assert third.source == "override_discount"
        assert third.cost_usd == Decimal("2.7")

        override_delete(override=provider_off)
        assert q() == catalog

        for each in (first, second, third):
            assert_decimal_quote(each)

    def test_overrides_belong_to_one_environment(self, tenant, outsider):
        override_create(environment=tenant.test, model="gpt-4o", discount_percent=Decimal(50))
        mine = quote("gpt-4o", None, self.USAGE, environment_id=tenant.test.pk)
        assert mine.cost_usd == Decimal("1.5")
        for other in (tenant.live, outsider.test):
            theirs = quote("gpt-4o", None, self.USAGE, environment_id=other.pk)
            assert (theirs.source, theirs.cost_usd) == ("catalog", Decimal("3"))

    def test_custom_rate_prices_a_model_the_catalog_does_not_know(self, tenant):
        override_create(
            environment=tenant.test,
            model="acme-llama-70b",
            input_mtok=Decimal("0.2"),
            output_mtok=Decimal("0.8"),
        )
        q = quote(
            "Acme-Llama-70B",
            None,
            TokenUsage(input_tokens=1000, output_tokens=1000, cache_read_tokens=500),
            environment_id=tenant.test.pk,
        )
        # cache reads default to the input rate
        assert q.cost_usd == Decimal("0.001")
        assert q.source == "override_rate"
        assert q.model is None and q.price_version_id is None

    def test_a_discount_does_not_price_an_unknown_model(self, tenant):
        override_create(environment=tenant.test, provider="openai", discount_percent=Decimal(5))
        q = quote("gpt-99-turbo", None, environment_id=tenant.test.pk)
        assert q.cost_usd is None and q.source == "unpriced"

    def test_steady_state_costs_no_query(self, tenant, django_assert_num_queries):
        override_create(environment=tenant.test, provider="anthropic", discount_percent=Decimal(3))
        models = ["gpt-4o", "claude-sonnet-4-20250514", "gemini-2.5-pro", "unknown-x"]
        for model in models:
            quote(model, None, environment_id=tenant.test.pk)
        with django_assert_num_queries(0):
            for _ in range(50):
                for model in models:
                    quote(model, None, environment_id=tenant.test.pk)


def test_batch_quotes_equal_single_quotes():
    env = uuid.uuid4()
    requests = [QuoteRequest(m, p, u, at) for m, p, u, at in SPREAD]
    batch = quote_costs(environment_id=env, requests=requests)
    assert batch == [
        quote_cost(environment_id=env, model=r.model, provider=r.provider, usage=r.usage, at=r.at)
        for r in requests
    ]
