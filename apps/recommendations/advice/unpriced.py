"""Models without a price: the events are stored with cost unknown, so every margin they
touch is an upper bound. For each such model of the window: how many events, how many
tokens, and a cost range from its nearest priced siblings (the catalog's models of the
same provider whose ids share the longest prefix with it), each pricing the same tokens
with the catalog's code. The money at stake is the low end of the range, scaled to a
month: the least cost the margins leave out. The action is a price override (custom
rates, prefilled with the nearest sibling's prices), which re-costs the events.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any

from apps.events import usage as ledger
from apps.events.usage import Grain, Measures
from apps.pricing.costing import infer_provider
from apps.pricing.selectors import price_in_force, price_versions
from apps.recommendations.models import Recommendation

from .cheaper import reprice
from .common import EXACT_DIGITS, TOP_CONTRIBUTORS, ZERO, AdviceWindow, Finding, assumption, money
from .ledger import WindowLedger

if TYPE_CHECKING:
    from apps.accounts.models import Environment

MAX_SIBLINGS = 5
MIN_SHARED_PREFIX = 3  # characters: "gp" says nothing about a model


def _catalog_models() -> list[tuple[str, str]]:
    """(provider, model id) of every model with a price in force."""
    rows = price_versions().values_list("model__provider__provider_id", "model__model_id")
    return sorted(set(rows))


def _shared_prefix(a: str, b: str) -> int:
    """How many leading characters ``a`` and ``b`` share."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def siblings(provider: str, model: str, catalog: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The priced models of ``provider`` (any provider when unknown) whose ids share the
    longest prefix with ``model`` (at least ``MIN_SHARED_PREFIX`` characters)."""
    name = model.strip().lower()
    pool = [entry for entry in catalog if not provider or entry[0] == provider]
    scored = [(_shared_prefix(name, m), (p, m)) for p, m in pool if m != name]
    best = max((score for score, _ in scored), default=0)
    if best < MIN_SHARED_PREFIX:
        return []
    return sorted(entry for score, entry in scored if score == best)[:MAX_SIBLINGS]


def unpriced_findings(
    environment: Environment, window: AdviceWindow, read: WindowLedger
) -> list[Finding]:
    rows = ledger.usage(environment, start=window.start, end=window.end, group_by=(Grain.MODEL,))
    catalog = _catalog_models() if any(r.measures.unpriced_count for r in rows) else []
    found = []
    for row in rows:
        model, provider = row.key.model or "", row.key.provider or ""
        if model and row.measures.unpriced_count:
            finding = _finding(
                environment,
                window,
                model=model,
                provider=provider,
                measures=row.measures,
                catalog=catalog,
            )
            finding.evidence["topContributors"] = _top(read, model, provider)
            found.append(finding)
    return found


def _top(read: WindowLedger, model: str, provider: str) -> list[dict[str, Any]]:
    """The features whose events of this model are unpriced, the most first."""
    rows = [
        (measures.unpriced_count, measures.event_count, read.feature_keys.get(feature, ""))
        for (feature, m, p), measures in read.models.items()
        if (m, p) == (model, provider) and measures.unpriced_count
    ]
    rows.sort(key=lambda row: (-row[0], row[2]))
    return [
        {"featureKey": key, "unpricedCount": unpriced, "eventCount": events}
        for unpriced, events, key in rows[:TOP_CONTRIBUTORS]
    ]


def _range(
    environment: Environment,
    window: AdviceWindow,
    measures: Measures,
    near: list[tuple[str, str]],
) -> list[tuple[Decimal, tuple[str, str]]]:
    """The unpriced events' tokens priced as each sibling: the share of the group's tokens
    that its unpriced events hold is taken as their share of events."""
    out = []
    for sibling_provider, sibling in near:
        quote = reprice(environment, sibling_provider, sibling, measures, window.end)
        if quote.cost_usd is None:
            continue
        with localcontext(prec=EXACT_DIGITS):
            share = Decimal(measures.unpriced_count) / Decimal(measures.event_count)
            out.append((quote.cost_usd * share, (sibling_provider, sibling)))
    return sorted(out)


def _finding(
    environment: Environment,
    window: AdviceWindow,
    *,
    model: str,
    provider: str,
    measures: Measures,
    catalog: list[tuple[str, str]],
) -> Finding:
    owner = provider or infer_provider(model) or ""
    costs = _range(environment, window, measures, siblings(owner, model, catalog))
    low = costs[0][0] if costs else ZERO
    nearest = costs[0][1] if costs else None
    label = f"{provider}/{model}" if provider else model
    return Finding(
        kind=Recommendation.Kind.UNPRICED_MODEL,
        subject=f"model:{label}",
        title=f"{model} has no price: {measures.unpriced_count} events without a cost",
        stake=window.monthly(low),
        direction=Recommendation.Direction.PROTECT_MARGIN,
        confidence=Recommendation.Confidence.MEDIUM if costs else Recommendation.Confidence.LOW,
        assumptions=[
            *window.assumptions(),
            assumption(
                "siblingPricing",
                ", ".join(f"{p}/{m}" for _c, (p, m) in costs) or "none",
                "the model costs about what its nearest priced siblings cost",
            ),
            assumption(
                "unpricedShare",
                f"{measures.unpriced_count}/{measures.event_count}",
                "the unpriced events hold this share of the model's tokens",
            ),
        ],
        evidence={
            "window": window.as_json(),
            "model": model,
            "provider": provider or None,
            "eventCount": measures.event_count,
            "unpricedCount": measures.unpriced_count,
            "tokens": {
                "input": measures.input_tokens,
                "cacheRead": measures.cache_read_tokens,
                "cacheWrite": measures.cache_write_tokens,
                "output": measures.output_tokens,
                "reasoning": measures.reasoning_tokens,
            },
            "costRange": (
                {"low": money(costs[0][0]), "high": money(costs[-1][0])} if costs else None
            ),
            "siblings": [
                {"provider": p, "model": m, "cost": money(cost)} for cost, (p, m) in costs
            ],
        },
        action=_override_action(owner, model, nearest, window),
    )


def _override_action(
    provider: str, model: str, nearest: tuple[str, str] | None, window: AdviceWindow
) -> dict[str, Any]:
    """A body for ``POST /api/model-price-overrides`` (custom rates for this model);
    applying it re-costs the unpriced events (``POST /api/events/recost``)."""
    request: dict[str, Any] = {"provider": provider, "model": model}
    if nearest is not None:
        price = price_in_force(nearest[0], nearest[1], window.end)
        if price is not None:
            for name in (
                "inputCostPerMillion",
                "outputCostPerMillion",
                "cacheReadCostPerMillion",
                "cacheWriteCostPerMillion",
            ):
                if price.get(name) is not None:
                    request[name] = money(price[name])
            request["note"] = f"priced as {nearest[0]}/{nearest[1]} (recommendation)"
    complete = "inputCostPerMillion" in request and "outputCostPerMillion" in request
    return {"type": "price_override", "request": request, "complete": complete}
