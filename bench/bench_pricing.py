"""Micro-benchmark of the costing hot path: quotes per second, one process, warm caches.

    DATABASE_URL=... REDIS_URL=... TANSO_ENV=development .venv/bin/python bench/bench_pricing.py

Prints quote_cost() and quote_costs() throughput over a mix of models (plain,
dated snapshot, cached prompt, tiered long context, reasoning, unknown), and
genai-prices' own calc_price() on the same mix for scale. Loads the catalog
(syncing it first if the database has none). No writes besides that sync.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tanso.settings")
os.environ.setdefault("TANSO_ENV", "development")

import django

django.setup()

from genai_prices import Usage, calc_price  # noqa: E402

from apps.pricing.costing import QuoteRequest, TokenUsage, quote_cost, quote_costs  # noqa: E402

MIX = [
    ("gpt-4o", None, TokenUsage(input_tokens=1200, output_tokens=300)),
    ("gpt-4o-2024-08-06", "openai", TokenUsage(input_tokens=900, output_tokens=120)),
    (
        "claude-sonnet-4-20250514",
        "anthropic",
        TokenUsage(
            input_tokens=5000, output_tokens=700, cache_read_tokens=3000, cache_write_tokens=1000
        ),
    ),
    ("gemini-2.5-pro", "google", TokenUsage(input_tokens=250_000, output_tokens=2000)),
    ("o3", "openai", TokenUsage(input_tokens=800, output_tokens=4000, reasoning_tokens=3000)),
    ("my-private-model", None, TokenUsage(input_tokens=10, output_tokens=10)),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    args = parser.parse_args()
    env_id = uuid.uuid4()
    at = dt.datetime.now(dt.UTC)
    for model, provider, usage in MIX:  # warm: catalog load, memo, compile
        quote_cost(environment_id=env_id, model=model, provider=provider, usage=usage, at=at)

    n = args.n
    mix = MIX * (n // len(MIX))
    start = time.perf_counter()
    for model, provider, usage in mix:
        quote_cost(environment_id=env_id, model=model, provider=provider, usage=usage, at=at)
    single = len(mix) / (time.perf_counter() - start)

    batch = [QuoteRequest(model, provider, usage, at) for model, provider, usage in mix]
    start = time.perf_counter()
    for i in range(0, len(batch), 500):
        quote_costs(environment_id=env_id, requests=batch[i : i + 500])
    batched = len(batch) / (time.perf_counter() - start)

    priced = [m for m in MIX if m[0] != "my-private-model"]
    ref_n = min(n, 20_000)
    ref_mix = priced * (ref_n // len(priced))
    start = time.perf_counter()
    for model, provider, usage in ref_mix:
        calc_price(
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
    reference = len(ref_mix) / (time.perf_counter() - start)

    print(f"quote_cost:   {single:,.0f} quotes/s")
    print(f"quote_costs:  {batched:,.0f} quotes/s (batches of 500)")
    print(f"genai-prices calc_price (reference): {reference:,.0f} calls/s")


if __name__ == "__main__":
    main()
