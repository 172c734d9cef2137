"""Usage a period billed: sums of ``usage_units`` per customer and feature, from the ledger.

The sums come from the ledger's read API (:mod:`apps.events.usage`): exact over each
``[start, end)`` (whole hours from the hourly rollup, which is kept in step with the
events so a late event counts as soon as it is stored; the fractions of an hour at a
period's edges, as an immediate cancellation leaves, from the events themselves).

Many ranges are summed in one statement per chunk of ranges, whatever their periods.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal, localcontext
from typing import Any

from apps.credits.coverage import Coverage, uncovered_units
from apps.events import selectors as ledger_selectors
from apps.events import usage as ledger
from apps.events.usage import Grain, Measure

# (key, customer_id, start, end): the usage of one customer over [start, end).
Range = tuple[Any, Any, dt.datetime, dt.datetime]
# key -> feature_id (or (feature_id, model, provider) with ``by_model``) -> units
Totals = dict[Any, dict[Any, Decimal]]
# key -> feature_id -> UTC day -> units
Daily = dict[Any, dict[Any, dict[dt.datetime, Decimal]]]

# Sums of rollup sums (38 digits each) stay exact.
EXACT_DIGITS = 100
# revenue_usd: the events' own revenue (the Stripe import leaves periods that have some alone).
MEASURES = frozenset({"usage_units", "cost_usd", "revenue_usd"})


def _windows(ranges: Sequence[Range]) -> list[ledger.CustomerWindow]:
    # The range's position is its key: two ranges may share a caller's key and add up.
    return [
        ledger.CustomerWindow(index, customer_id, start, end)
        for index, (_key, customer_id, start, end) in enumerate(ranges)
    ]


def usage_sums(
    environment_id: Any,
    ranges: Sequence[Range],
    *,
    measures: Sequence[str],
    by_model: bool = False,
) -> dict[str, Totals]:
    """Units (or known cost, or event revenue, USD) per feature for each range, for each
    of ``measures`` (features without events are absent); with ``by_model``, per
    ``(feature_id, model, provider)``: ``{measure: totals}``."""
    if not measures or any(measure not in MEASURES for measure in measures):
        raise ValueError(f"unknown measures {measures!r}")
    grains = (Grain.FEATURE, Grain.MODEL) if by_model else (Grain.FEATURE,)
    sums = ledger.customer_window_sums(
        environment_id,
        _windows(ranges),
        group_by=grains,
        measures=[Measure(measure) for measure in measures],
    )
    out: dict[str, Totals] = {measure: {key: {} for key, *_ in ranges} for measure in measures}
    with localcontext(prec=EXACT_DIGITS):
        for index, groups in sums.items():
            key = ranges[index][0]
            for group, amounts in groups.items():
                name = (
                    (group.feature_id, group.model, group.provider)
                    if by_model
                    else group.feature_id
                )
                for measure, amount in amounts.items():
                    bucket = out[measure][key]
                    bucket[name] = bucket.get(name, Decimal(0)) + amount
    return out


def usage_totals(
    environment_id: Any,
    ranges: Sequence[Range],
    *,
    measure: str = "usage_units",
    by_model: bool = False,
) -> Totals:
    """Units (or known cost, or event revenue, USD) per feature for each range (features
    without events are absent); with ``by_model``, per ``(feature_id, model, provider)``."""
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}")
    return usage_sums(environment_id, ranges, measures=[measure], by_model=by_model)[measure]


def usage_by_day(environment_id: Any, ranges: Sequence[Range], feature_ids: Iterable[Any]) -> Daily:
    """Units per feature and UTC day for each range, for the given features only
    (caps that reset daily, weekly or monthly count per window)."""
    out: Daily = {key: defaultdict(dict) for key, *_ in ranges}
    features = list(feature_ids)
    if not features:
        return out
    sums = ledger.customer_window_sums(
        environment_id,
        _windows(ranges),
        group_by=(Grain.FEATURE, Grain.DAY),
        feature_ids=features,
    )
    with localcontext(prec=EXACT_DIGITS):
        for index, groups in sums.items():
            for group, amounts in groups.items():
                assert group.day is not None  # grouped by day
                per_day = out[ranges[index][0]][group.feature_id]
                units = amounts[Measure.USAGE_UNITS]
                per_day[group.day] = per_day.get(group.day, Decimal(0)) + units
    return out


def uncovered_by_credits(
    environment_id: Any, ranges: Sequence[Range], feature_ids: Iterable[Any]
) -> Totals:
    """Units of credit-backed ``feature_ids`` that credits did not cover (a hard-limit
    pool's shortfall, or no credit model to charge), per feature for each range
    (features without any are absent).

    Read from the events themselves (the rollups do not say which units credits paid;
    :func:`apps.events.selectors.credit_flagged_events`, counted by
    :func:`apps.credits.coverage.uncovered_units`); the caller skips customers whose soft
    pools cover every denomination."""
    out: Totals = {key: {} for key, *_ in ranges}
    for row in ledger_selectors.credit_flagged_events(
        environment_id, _windows(ranges), feature_ids
    ):
        with localcontext(prec=EXACT_DIGITS):
            uncovered = uncovered_units(row.units, Coverage.from_flags(row.flags)) * row.count
        if uncovered:
            bucket = out[ranges[row.window_key][0]]
            bucket[row.feature_id] = bucket.get(row.feature_id, Decimal(0)) + uncovered
    return out
