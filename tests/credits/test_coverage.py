"""The one definition of the units credits did not cover, as billing and the Stripe meter
step use it (their own tests check each end to end)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from apps.credits.coverage import Coverage, uncovered_units
from apps.events.flags import EventFlags


@pytest.mark.parametrize(
    ("units", "coverage", "expected"),
    [
        (D(10), None, D(10)),  # nothing charged: every unit
        (D(0), None, D(0)),
        (D(60), Coverage(deducted=D(60)), D(0)),  # fully covered
        (D(60), Coverage(deducted=D(40), shortfall=D(20)), D(20)),  # a hard pool ran dry
        (D(10), Coverage(deducted=D(0), shortfall=D(10)), D(10)),
        (D(8), Coverage(deducted=D(16), debt=D(6)), D(3)),  # a soft pool went 6 below 0
        (D(1), Coverage(deducted=D(2), debt=D(8)), D(1)),  # already below zero
        (D(5), Coverage(deducted=D(0)), D(0)),  # a weight of 0 costs no credits
        (D(10), Coverage(deducted=D(4), shortfall=D(3)), D("4.285714285714")),  # half-up
        (D(1), Coverage(deducted=D(2), shortfall=D(1)), D("0.333333333333")),
    ],
)
def test_uncovered_units(units, coverage, expected):
    assert uncovered_units(units, coverage) == expected


def test_from_flags_reads_what_ingestion_stamped():
    short = EventFlags()
    short.credits_charged(deducted=D(40), shortfall=D(20))
    assert uncovered_units(D(60), Coverage.from_flags(short)) == D(20)
    errored = EventFlags(credit_error="unknown_denomination")
    assert Coverage.from_flags(errored) is None
    assert uncovered_units(D(7), Coverage.from_flags(errored)) == D(7)
