"""Realistic event batches: mixed providers and models (one unpriced), cached and
reasoning tokens, a few hundred customers, a handful of features, and a share of
duplicates (retries of earlier events)."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

MODELS = [
    ("openai", "gpt-4o", 0.30),
    ("openai", "gpt-4o-mini", 0.25),
    ("anthropic", "claude-sonnet-4-20250514", 0.15),
    ("anthropic", "claude-3-5-haiku-latest", 0.10),
    ("google", "gemini-2.5-flash", 0.10),
    ("openai", "o3-mini", 0.07),
    ("acme", "acme-internal-llm-v2", 0.03),  # unknown to the catalog: unpriced
]
FEATURES = ["ai_chat", "ai_summarization", "doc_search", "code_review", "translate", "agent_step"]


def make_event(rng: random.Random, now: dt.datetime) -> dict[str, Any]:
    provider, model, _ = rng.choices(MODELS, weights=[m[2] for m in MODELS])[0]
    prompt = rng.randint(200, 12_000)
    event: dict[str, Any] = {
        "idempotencyKey": uuid.UUID(int=rng.getrandbits(128)).hex,
        "eventName": rng.choice(["chat", "embed", "api_call"]),
        "customerReferenceId": f"cus_{rng.randint(1, 500)}",
        "featureKey": rng.choice(FEATURES),
        "model": model,
        "modelProvider": provider,
        "inputTokens": prompt,
        "outputTokens": rng.randint(20, 1500),
        "durationMs": rng.randint(150, 9000),
        "occurredAt": (now - dt.timedelta(seconds=rng.randint(0, 3600))).isoformat(),
    }
    if rng.random() < 0.3:
        event["cacheReadTokens"] = rng.randint(0, prompt // 2)
    if model.startswith("o3"):
        # Reasoning tokens are part of the output (ingestion refuses more).
        event["reasoningTokens"] = rng.randint(0, event["outputTokens"])
    if rng.random() < 0.2:
        event["revenueAmount"] = f"{rng.randint(1, 500) / 1000:.3f}"
    if rng.random() < 0.1:
        event["traceId"] = f"tr_{rng.randint(1, 10_000)}"
    return event


def make_batches(
    seed: int, batches: int, size: int, duplicate_share: float = 0.10
) -> list[list[dict]]:
    """``batches`` lists of ``size`` events; ``duplicate_share`` of each batch after the
    first repeats events already sent (the retries a real client makes)."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    sent: list[dict] = []
    out: list[list[dict]] = []
    for n in range(batches):
        dups = int(size * duplicate_share) if n else 0
        batch = [make_event(rng, now) for _ in range(size - dups)]
        batch += [dict(e) for e in rng.sample(sent, min(dups, len(sent)))]
        rng.shuffle(batch)
        sent.extend(batch[:50])
        out.append(batch)
    return out
