"""Customers and features under the target margin.

With revenue ``R`` and cost ``C`` over the window and the target margin ``t`` (a
fraction), keeping ``t`` of the revenue would leave a cost of at most ``(1 - t) x R``;
the money at stake is the excess, ``C - (1 - t) x R``, scaled to a month. A customer
(feature) at or above the target has none and gets no finding.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal, localcontext
from typing import Any

from apps.recommendations.models import Recommendation

from .common import (
    EXACT_DIGITS,
    TOP_CONTRIBUTORS,
    ZERO,
    AdviceWindow,
    Finding,
    margin_pct,
    money,
    simulate,
)
from .ledger import Sums, WindowLedger

Kind = Recommendation.Kind
# feature id -> the model_swap changes the cheaper-model advice found for it.
Swaps = dict[uuid.UUID, list[dict[str, Any]]]


def shortfall(sums: Sums, target: Decimal) -> Decimal:
    """``C - (1 - t) x R`` over the window (USD, exact); <= 0 at or above the target."""
    with localcontext(prec=EXACT_DIGITS):
        return sums.cost - (1 - target) * sums.revenue


def margin_findings(window: AdviceWindow, read: WindowLedger, swaps: Swaps) -> list[Finding]:
    found = []
    for customer, sums in read.customers.items():
        reference = read.customer_refs.get(customer)
        if reference is not None and (
            finding := _customer(
                window, read, swaps, reference=reference, customer=customer, sums=sums
            )
        ):
            found.append(finding)
    for feature, sums in read.features.items():
        key = read.feature_keys.get(feature)
        if key is not None and (
            finding := _feature(window, read, swaps, key=key, feature=feature, sums=sums)
        ):
            found.append(finding)
    return found


def _evidence(window: AdviceWindow, sums: Sums, top: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "window": window.as_json(),
        "eventCount": sums.events,
        "unpricedCount": sums.unpriced,
        "revenue": money(sums.revenue),
        "cost": money(sums.cost),
        "marginPct": margin_pct(sums.revenue, sums.cost),
        "targetMarginPct": money(window.target_pct),
        "shortfall": money(shortfall(sums, window.target)),
        "topContributors": top,
    }


def _top(
    read: WindowLedger,
    match: Callable[[uuid.UUID, uuid.UUID], bool],
    name: Callable[[uuid.UUID, uuid.UUID], dict[str, str]],
) -> list[dict[str, Any]]:
    """The pairs ``match`` keeps, by cost, the largest first."""
    pairs = [(key, sums) for key, sums in read.pairs.items() if match(*key)]
    pairs.sort(key=lambda item: (-item[1].cost, -item[1].events, str(item[0])))
    return [
        {
            **name(*key),
            "eventCount": sums.events,
            "cost": money(sums.cost),
            "revenue": money(sums.revenue),
        }
        for key, sums in pairs[:TOP_CONTRIBUTORS]
    ]


def _assumptions(window: AdviceWindow, sums: Sums) -> list[dict[str, str]]:
    out = window.assumptions()
    if sums.unpriced:
        out.append(
            {
                "name": "unpricedEvents",
                "value": str(sums.unpriced),
                "note": "events without a price add no cost here: the money at stake is a "
                "lower bound",
            }
        )
    return out


def _scenarios(swaps: Swaps, features: list[uuid.UUID]) -> list[dict[str, Any]]:
    changes = [change for feature in features for change in swaps.get(feature, [])]
    if not changes:
        return [{"name": "As today", "changes": []}]
    return [{"name": "Cheaper models", "changes": changes}]


def _customer(
    window: AdviceWindow,
    read: WindowLedger,
    swaps: Swaps,
    *,
    reference: str,
    customer: uuid.UUID,
    sums: Sums,
) -> Finding | None:
    excess = shortfall(sums, window.target)
    if excess <= ZERO:
        return None
    top = _top(
        read,
        lambda c, _f: c == customer,
        lambda _c, f: {"featureKey": read.feature_keys.get(f, str(f))},
    )
    features = [f for c, f in read.pairs if c == customer]
    pct = margin_pct(sums.revenue, sums.cost)
    return Finding(
        kind=Kind.CUSTOMER_MARGIN,
        subject=f"customer:{reference}",
        title=f"Customer {reference} is under the target margin"
        + (f" ({pct} % against {money(window.target_pct)} %)" if pct is not None else ""),
        stake=window.monthly(excess),
        direction=Recommendation.Direction.PROTECT_MARGIN,
        confidence=_confidence(sums),
        assumptions=_assumptions(window, sums),
        evidence={"customerReferenceId": reference, **_evidence(window, sums, top)},
        action=simulate(
            window,
            name=f"Customer {reference} at the target margin",
            cohort={"type": "customers", "customerReferenceIds": [reference]},
            scenarios=_scenarios(swaps, features),
        ),
    )


def _feature(
    window: AdviceWindow,
    read: WindowLedger,
    swaps: Swaps,
    *,
    key: str,
    feature: uuid.UUID,
    sums: Sums,
) -> Finding | None:
    excess = shortfall(sums, window.target)
    if excess <= ZERO:
        return None
    top = _top(
        read,
        lambda _c, f: f == feature,
        lambda c, _f: {"customerReferenceId": read.customer_refs.get(c, str(c))},
    )
    pct = margin_pct(sums.revenue, sums.cost)
    return Finding(
        kind=Kind.FEATURE_MARGIN,
        subject=f"feature:{key}",
        title=f"Feature {key} is under the target margin"
        + (f" ({pct} % against {money(window.target_pct)} %)" if pct is not None else ""),
        stake=window.monthly(excess),
        direction=Recommendation.Direction.PROTECT_MARGIN,
        confidence=_confidence(sums),
        assumptions=_assumptions(window, sums),
        evidence={"featureKey": key, **_evidence(window, sums, top)},
        action=simulate(
            window,
            name=f"Feature {key} at the target margin",
            cohort={"type": "all"},
            scenarios=_scenarios(swaps, [feature]),
        ),
    )


def _confidence(sums: Sums) -> str:
    # Unpriced events make the cost (and so the money at stake) a lower bound.
    return Recommendation.Confidence.MEDIUM if sums.unpriced else Recommendation.Confidence.HIGH
