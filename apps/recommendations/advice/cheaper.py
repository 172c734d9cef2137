"""A cheaper model for the same feature.

For each (feature, model) of the window with token counts, and each candidate the
environment's table of comparable models (:func:`apps.recommendations.selectors.
comparable_pairs`) offers for that model, the window's own token shape (input, cache
read, cache write, output, reasoning; one request per event) is priced twice with the
catalog's code (:func:`apps.pricing.costing.quote_cost`: the environment's negotiated
rates included): as the model it is and as the candidate. The money at stake is the
difference, scaled to a month. Nothing says the candidate does the work as well: the
confidence is low (events carry no outcome signal to compare the two).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import localcontext
from typing import TYPE_CHECKING, Any

from apps.core.tenancy import scoped
from apps.customers.models import Customer
from apps.events import usage as ledger
from apps.events.usage import Grain, Measures, UsageFilter
from apps.pricing.catalog import get_catalog
from apps.pricing.costing import CostQuote, TokenUsage, quote_cost
from apps.recommendations.models import Recommendation

from .common import (
    EXACT_DIGITS,
    TOP_CONTRIBUTORS,
    ZERO,
    AdviceWindow,
    Finding,
    assumption,
    money,
    simulate,
)
from .ledger import WindowLedger

if TYPE_CHECKING:
    from apps.accounts.models import Environment

Pair = tuple[str, str, str, str]  # from provider, from model, to provider, to model


def token_usage(measures: Measures) -> TokenUsage:
    """The window's token shape of one group, one request per event."""
    return TokenUsage(
        input_tokens=measures.input_tokens,
        output_tokens=measures.output_tokens,
        cache_read_tokens=measures.cache_read_tokens,
        cache_write_tokens=measures.cache_write_tokens,
        reasoning_tokens=measures.reasoning_tokens,
        requests=measures.event_count,
    )


def reprice(
    environment: Environment, provider: str | None, model: str, measures: Measures, at: dt.datetime
) -> CostQuote:
    """The group's tokens priced as ``model`` at ``at`` with the catalog's code."""
    return quote_cost(
        environment_id=environment.pk,
        model=model,
        provider=provider or None,
        usage=token_usage(measures),
        at=at,
    )


def _names(provider: str, model: str) -> set[tuple[str, str]]:
    """The (provider, model) pairs a ledger group answers to: as written, and as the
    catalog resolves it (a dated snapshot is its base model)."""
    names = {(provider, model)}
    resolved = get_catalog().resolve(provider or None, model.strip().lower())
    if resolved is not None:
        names |= {
            (resolved.provider_id, resolved.model_id),
            (resolved.owner_provider_id, resolved.model_id),
        }
    return names


def cheaper_findings(
    environment: Environment, window: AdviceWindow, read: WindowLedger, pairs: list[Pair]
) -> tuple[list[Finding], dict[uuid.UUID, list[dict[str, Any]]]]:
    """The findings, and each feature's best swap per model (for the margin advice)."""
    by_source: dict[tuple[str, str], list[Pair]] = {}
    for pair in pairs:
        by_source.setdefault((pair[0], pair[1]), []).append(pair)
    found: list[Finding] = []
    best: dict[tuple[uuid.UUID, str, str], Finding] = {}
    for (feature, model, provider), measures in sorted(read.models.items(), key=str):
        key = read.feature_keys.get(feature)
        if key is None or not model or not (measures.input_tokens or measures.output_tokens):
            continue
        candidates = [p for name in _names(provider, model) for p in by_source.get(name, [])]
        for pair in sorted(set(candidates)):
            finding = _finding(
                environment,
                window,
                feature_key=key,
                feature=feature,
                model=model,
                provider=provider,
                measures=measures,
                pair=pair,
            )
            if finding is None:
                continue
            found.append(finding)
            slot = (feature, model, provider)
            if slot not in best or finding.stake > best[slot].stake:
                best[slot] = finding
    swaps: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for (feature, _model, _provider), finding in sorted(best.items(), key=str):
        swaps.setdefault(feature, []).append(finding.evidence["change"])
    return found, swaps


def _finding(
    environment: Environment,
    window: AdviceWindow,
    *,
    feature_key: str,
    feature: uuid.UUID,
    model: str,
    provider: str,
    measures: Measures,
    pair: Pair,
) -> Finding | None:
    _fp, _fm, to_provider, to_model = pair
    current = reprice(environment, provider, model, measures, window.end)
    candidate = reprice(environment, to_provider, to_model, measures, window.end)
    if current.cost_usd is None or candidate.cost_usd is None:
        return None
    with localcontext(prec=EXACT_DIGITS):
        saving = current.cost_usd - candidate.cost_usd
    if saving <= ZERO:
        return None
    change = {
        "type": "model_swap",
        "featureKey": feature_key,
        "fromModel": model,
        "toModel": to_model,
        "toProvider": to_provider,
    }
    label = f"{provider}/{model}" if provider else model
    return Finding(
        kind=Recommendation.Kind.CHEAPER_MODEL,
        subject=f"feature:{feature_key}|from:{label}|to:{to_provider}/{to_model}",
        title=f"{feature_key}: {to_model} instead of {model}",
        stake=window.monthly(saving),
        direction=Recommendation.Direction.SAVE_COST,
        confidence=Recommendation.Confidence.LOW,
        assumptions=_assumptions(window),
        evidence={
            "window": window.as_json(),
            "featureKey": feature_key,
            "model": model,
            "provider": provider or None,
            "candidateModel": to_model,
            "candidateProvider": to_provider,
            "eventCount": measures.event_count,
            "tokens": _tokens(measures),
            "observedCost": money(measures.cost_usd),
            "unpricedCount": measures.unpriced_count,
            "repricedCost": money(current.cost_usd),
            "candidateCost": money(candidate.cost_usd),
            "saving": money(saving),
            "priceVersionIds": [current.price_version_id, candidate.price_version_id],
            "outcomeSignal": False,
            "topContributors": _top(environment, window, feature, model, provider),
            "change": change,
        },
        action=simulate(
            window,
            name=f"{feature_key} on {to_model}",
            cohort={"type": "all"},
            scenarios=[{"name": f"{to_model} for {feature_key}", "changes": [change]}],
        ),
    )


def _tokens(measures: Measures) -> dict[str, int]:
    return {
        "input": measures.input_tokens,
        "cacheRead": measures.cache_read_tokens,
        "cacheWrite": measures.cache_write_tokens,
        "output": measures.output_tokens,
        "reasoning": measures.reasoning_tokens,
    }


def _assumptions(window: AdviceWindow) -> list[dict[str, str]]:
    return [
        *window.assumptions(),
        assumption(
            "sameTokens", "true", "the candidate reads and writes as many tokens as the model did"
        ),
        assumption("requestsPerEvent", 1, "each event is one request to the model"),
        assumption("pricedAt", window.as_json()["to"], "both priced with the prices in force then"),
        assumption(
            "outcomeSignal", "none", "no outcome signal compares the two models: quality unknown"
        ),
    ]


def _top(
    environment: Environment, window: AdviceWindow, feature: uuid.UUID, model: str, provider: str
) -> list[dict[str, Any]]:
    """The customers whose use of this feature and model costs most."""
    rows = ledger.usage(
        environment,
        start=window.start,
        end=window.end,
        group_by=(Grain.CUSTOMER,),
        filters=UsageFilter(feature_ids=[feature], models=[model], providers=[provider]),
    )
    rows.sort(key=lambda row: (-row.measures.cost_usd, -row.measures.event_count))
    top = [(row.key.customer_id, row.measures) for row in rows[:TOP_CONTRIBUTORS]]
    ids = [customer for customer, _measures in top if customer is not None]
    refs = dict(scoped(Customer, environment).filter(id__in=ids).values_list("id", "reference_id"))
    return [
        {
            "customerReferenceId": refs.get(customer, str(customer)) if customer else None,
            "eventCount": measures.event_count,
            "cost": money(measures.cost_usd),
        }
        for customer, measures in top
    ]
