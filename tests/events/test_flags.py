"""Event flags: the stored JSON round-trips through EventFlags exactly, unknown keys kept."""

from __future__ import annotations

from decimal import Decimal as D

from apps.events import flags
from apps.events.flags import EventFlags


def test_each_key_reads_and_writes_its_stored_shape():
    stored = {
        "usage_limit_exceeded": True,
        "usage_limit_max": "100",
        "usage_limit_used_before": "95.5",
        "overage_units": "0",
        "plan_revenue_skipped": "plan currency EUR",
        "reservation_not_settled": "3f0c: expired",
        "credit_error": "unknown_denomination",
        "credit_deducted": "5",
        "insufficient_credits": True,
        "credit_shortfall": "3",
        "recostRunId": 7,
    }
    read = EventFlags.from_json(stored)
    assert (read.usage_limit_used_before, read.overage_units, read.recost_run_id) == (
        D("95.5"),
        D(0),
        7,
    )
    assert read.other == {}
    assert read.to_json() == stored
    assert flags.public(stored) == stored


def test_unknown_keys_and_unexpected_values_are_kept_verbatim():
    stored = {"legacy_note": {"a": 1}, "credit_shortfall": 3, "usage_limit_exceeded": "yes"}
    read = EventFlags.from_json(stored)
    assert read.credit_shortfall is None and not read.usage_limit_exceeded
    assert read.to_json() == stored


def test_writers_set_only_their_keys_and_a_zero_amount_counts_as_set():
    empty = EventFlags()
    assert not empty and empty.to_json() == {}
    charged = EventFlags()
    charged.credits_charged(deducted=D(0), shortfall=D(0))
    assert charged and charged.to_json() == {"credit_deducted": "0"}
    short = EventFlags()
    short.credits_charged(deducted=D("1.50"), shortfall=D(2))
    assert short.to_json() == {
        "credit_deducted": "1.5",
        "insufficient_credits": True,
        "credit_shortfall": "2",
    }
    capped = EventFlags()
    capped.usage_limit_passed(limit=D(10), used_before=D(8), beyond=D(3))
    assert capped.to_json() == {
        "usage_limit_exceeded": True,
        "usage_limit_max": "10",
        "usage_limit_used_before": "8",
        "overage_units": "3",
    }


def test_sql_expressions_name_the_keys():
    assert flags.sql_has(flags.CREDIT_ERROR, "e") == "e.flags ? 'credit_error'"
    assert flags.sql_decimal(flags.OVERAGE_UNITS) == "(flags->>'overage_units')::numeric"
