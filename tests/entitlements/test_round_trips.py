"""Round trips to PostgreSQL of credit-backed ingestion, pinned so they cannot grow back.

A credit-backed single event (caches warm): the request's savepoint (BEGIN in
production), the advisory lock, one prepared statement that locks the pool and one that
reads its grants, the store statement, one that writes the ledger, and the release
(COMMIT): seven. It used to be twelve (a savepoint of its own, then one statement per
table); then six, with the pool's lock and reads as three unprepared statements in one
round trip, which PostgreSQL planned on every event. A batch makes the same number
whatever its size and its number of customers.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from django.db import connection

from apps.credits.models import CreditPool, CreditTransaction
from tests.credits.conftest import assert_ledger_consistent

from .conftest import batch_event, rule

pytestmark = pytest.mark.django_db

SINGLE_ROUND_TRIPS = 7
BATCH_ROUND_TRIPS = 8  # + the batch's look-up of keys stored before


@pytest.fixture
def backed(platform, settings):
    # The key is verified once (not again after the usual 2 s): its look-up is not ingestion.
    settings.APIKEY_CACHE_SECONDS = 600
    plan = platform.plan("pro", {"tokens": rule(price="0.01", credits="AI_CREDITS", per_unit="2")})
    for n in range(12):
        platform.subscribe(plan, f"cus_{n}")
        platform.grant(platform.pool(f"cus_{n}"), "1000")
    for n in range(12):  # warm: the key, ids, plan state and counters of every customer
        assert platform.event(units=1, ref=f"cus_{n}").status_code == 201
    return platform


def test_a_credit_backed_event_makes_seven_round_trips(backed, django_assert_max_num_queries):
    with django_assert_max_num_queries(SINGLE_ROUND_TRIPS):
        response = backed.event(units=3, ref="cus_1")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["creditsDeducted"] == "6"
    assert body["remainingBalance"] == "992"  # 1000 - 2 (warm-up) - 6
    pool = CreditPool.objects.get(environment=backed.env, customer__reference_id="cus_1")
    assert pool.balance == D(992)
    assert_ledger_consistent(pool)


@pytest.mark.parametrize(("customers", "size"), [(2, 4), (12, 60)])
def test_a_batch_makes_as_many_whatever_its_size(
    backed, django_assert_max_num_queries, customers, size
):
    events = [batch_event(units=1, ref=f"cus_{n % customers}") for n in range(size)]
    with django_assert_max_num_queries(BATCH_ROUND_TRIPS):
        response = backed.batch(events)
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == size
    assert (
        CreditTransaction.objects.filter(
            environment=backed.env, transaction_type="deduction"
        ).count()
        == 12 + size
    )
    for pool in CreditPool.objects.filter(environment=backed.env):
        assert_ledger_consistent(pool)


def test_a_replayed_charge_is_caught_under_the_lock(backed):
    """The replay check runs under the pool's lock (no savepoint to fall back on): a second
    charge for one event changes nothing and reports the first."""
    from django.utils import timezone

    from apps.credits.services import credits_deduct_for_usage
    from apps.features.models import Feature

    customer = backed.customer("cus_3")
    feature = Feature.objects.get(environment=backed.env, key="tokens")
    charge = {
        "environment": backed.env,
        "customer_id": customer.pk,
        "feature_id": feature.pk,
        "model": None,
        "units": D(5),
        "occurred_at": timezone.now(),
        "event_ref": "ev-42",
        "denomination": "AI_CREDITS",
        "default_credits_per_unit": D(2),
    }
    first = credits_deduct_for_usage(**charge)
    again = credits_deduct_for_usage(**charge)
    assert (first.deducted, first.replayed) == (D(10), False)
    assert (again.deducted, again.replayed, again.transaction_id) == (
        D(10),
        True,
        first.transaction_id,
    )
    pool = CreditPool.objects.get(pk=first.pool.pk)
    assert pool.balance == D(1000 - 2 - 10)
    assert_ledger_consistent(pool)


def test_an_event_whose_charge_was_posted_already_is_answered_as_a_replay(backed):
    """Ingestion computes the charge before the store and writes it after, unless the
    ledger already holds an entry for the event (only a hand-made idempotency key can do
    that): then nothing of the prepared charge is written and the general path answers
    the replay, as it always has."""
    from django.db import connection

    from apps.credits.services import credits_deduct

    with connection.cursor() as cur:
        cur.execute("SELECT nextval('events_event_id_seq')")
        next_id = cur.fetchone()[0] + 1
    pool = CreditPool.objects.get(environment=backed.env, customer__reference_id="cus_5")
    manual = credits_deduct(pool=pool, amount=D(7), actor=None, idempotency_key=f"event:{next_id}")
    response = backed.event(units=3, ref="cus_5")
    assert response.status_code == 201, response.content
    body = response.json()
    assert int(body["id"]) == next_id
    assert body["creditsDeducted"] == "7"  # the entry already there, not a second one
    pool.refresh_from_db()
    assert pool.balance == D(1000 - 2 - 7)
    assert (
        CreditTransaction.objects.filter(pool=pool, idempotency_key=f"event:{next_id}").get().pk
        == manual.pk
    )
    assert_ledger_consistent(pool)


def _grant_updates() -> tuple[int, int]:
    """(updates, HOT updates) of credit grants in this transaction so far."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_stat_get_xact_tuples_updated(c.oid),"
            " pg_stat_get_xact_tuples_hot_updated(c.oid)"
            " FROM pg_class AS c WHERE c.relname = 'credits_creditgrant'"
        )
        return cur.fetchone()


def test_drawing_a_grant_updates_it_in_place(backed):
    """Every credit-backed event draws a grant: a HOT update (no new index entries), which
    needs an update that changes no indexed column, conditions of partial indexes included."""
    updates, hot = _grant_updates()
    for n in range(6):
        assert backed.event(units=1, ref=f"cus_{n}").status_code == 201
    after_updates, after_hot = _grant_updates()
    assert after_updates - updates == 6
    assert after_hot - hot == 6
