"""Reservations: holds against the cap and the hard-limit credit balance, settled by the
event that follows, expiring unsettled; never over a hard limit under concurrency."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal as D

import pytest
from django.db import connection
from django.utils import timezone

from apps.entitlements.models import Reservation
from apps.entitlements.services import entitlement_reserve, reservations_expire
from apps.events.models import Event

from .conftest import rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def capped(platform):
    platform.subscribe(platform.plan("pro", {"tokens": rule(price="0.5", cap="10")}))
    return platform


class TestHoldAndSettle:
    def test_reserve_holds_then_the_event_settles(self, capped):
        body = capped.check(units=6, reserve=True, ttlSeconds=120)
        assert body["allowed"] is True
        reservation_id = body["reservationId"]
        assert body["reservation"]["units"] == "6" and body["reservation"]["status"] == "held"
        held = capped.check(units=5)
        assert (held["allowed"], held["reason"]["code"]) == (False, "limit_reached")
        assert (held["usage"]["held"], held["usage"]["remaining"]) == ("6", "4")

        event = capped.event(units=4, reservationId=reservation_id).json()
        assert event["reservationStatus"] == "settled"
        reservation = Reservation.objects.get(pk=reservation_id)
        assert reservation.status == "settled" and reservation.event_id == int(event["id"])
        assert reservation.settled_units == D(4)
        assert Event.objects.get(pk=int(event["id"])).reservation_id == reservation.pk

        after = capped.check()
        assert (after["usage"]["used"], after["usage"]["held"]) == ("4", "0")
        assert after["usage"]["remaining"] == "6"

    def test_a_reservation_settles_once(self, capped):
        reservation_id = capped.check(units=2, reserve=True)["reservationId"]
        capped.event(units=2, reservationId=reservation_id)
        again = capped.event(units=2, reservationId=reservation_id).json()
        assert again["reservationStatus"] == "not_held"
        assert again["reservationProblem"] == "settled"
        event = Event.objects.get(pk=int(again["id"]))
        assert event.reservation_id is None
        assert "reservation_not_settled" in event.flags
        assert capped.check()["usage"]["used"] == "4"  # both events count

    def test_denied_reservation_holds_nothing(self, capped):
        capped.event(units=8)
        body = capped.check(units=3, reserve=True)
        assert body["allowed"] is False and "reservationId" not in body
        assert not Reservation.objects.exists()

    def test_expired_holds_stop_counting(self, capped):
        reservation_id = capped.check(units=9, reserve=True, ttlSeconds=60)["reservationId"]
        assert capped.check(units=2)["allowed"] is False
        Reservation.objects.filter(pk=reservation_id).update(
            expires_at=timezone.now() - dt.timedelta(seconds=1)
        )
        assert capped.check(units=2)["allowed"] is True
        late = capped.event(units=9, reservationId=reservation_id).json()
        assert late["reservationProblem"] == "expired"
        assert reservations_expire() == 1
        assert Reservation.objects.get(pk=reservation_id).status == "expired"

    def test_other_customer_or_environment_cannot_settle(self, capped, outsider):
        reservation_id = capped.check(units=2, reserve=True)["reservationId"]
        other = capped.event(units=1, ref="cus_2", reservationId=reservation_id).json()
        assert other["reservationProblem"] == "other_customer_or_feature"
        # Another organization's environment: its events never reach our reservation.
        foreign = capped.event(units=1, key=outsider.sk_test, reservationId=reservation_id).json()
        assert foreign.get("reservationStatus") != "settled"
        assert Event.objects.get(pk=int(foreign["id"])).reservation_id is None
        assert Reservation.objects.get(pk=reservation_id).status == "held"

    def test_batch_events_settle_too(self, capped):
        from .conftest import batch_event

        reservation_id = capped.check(units=3, reserve=True)["reservationId"]
        response = capped.batch([batch_event(units=3, reservationId=reservation_id)])
        assert response.json()["events"][0]["reservationStatus"] == "settled"
        assert Reservation.objects.get(pk=reservation_id).status == "settled"

    def test_bad_reservation_id_is_a_validation_error(self, capped):
        response = capped.event(units=1, reservationId="nope")
        assert response.status_code == 400
        assert "reservationId" in response.json()["error"]["fields"]

    def test_reserve_with_redis_down(self, capped, dead_redis):
        assert capped.check(units=7, reserve=True)["allowed"] is True
        assert capped.check(units=4, reserve=True)["allowed"] is False
        assert capped.check(units=3, reserve=True)["allowed"] is True


class TestCredits:
    def test_holds_count_against_a_hard_pool(self, platform):
        plan = platform.plan("pro", {"tokens": rule(price="1", credits="AI_CREDITS", per_unit="2")})
        platform.subscribe(plan)
        platform.grant(platform.pool(), "10")
        first = platform.check(units=4, reserve=True)
        assert first["allowed"] is True and first["reservation"]["credits"] == "8"
        second = platform.check(units=2, reserve=True)
        assert (second["allowed"], second["reason"]["code"]) == (False, "credits_exhausted")
        assert second["credits"]["available"] == "2" and second["credits"]["held"] == "8"
        assert platform.check(units=1, reserve=True)["allowed"] is True


def _run_threads(count, target):
    barrier = threading.Barrier(count)
    results: list = []
    errors: list = []

    def run():
        try:
            barrier.wait(timeout=30)
            results.append(target())
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
class TestConcurrency:
    def test_many_threads_never_exceed_a_hard_cap(self, platform):
        platform.subscribe(platform.plan("pro", {"tokens": rule(price="1", cap="10")}))
        platform.event(units=1)  # usage counts too: 9 left

        def reserve():
            return entitlement_reserve(
                platform.env, reference_id="cus_1", feature_key="tokens", units=D(1)
            ).allowed

        results = _run_threads(16, reserve)
        assert results.count(True) == 9
        assert Reservation.objects.filter(status="held").count() == 9
        body = platform.check(units=1)
        assert body["allowed"] is False and body["usage"]["held"] == "9"

    def test_many_threads_never_exceed_a_hard_credit_balance(self, platform):
        plan = platform.plan("pro", {"tokens": rule(price="1", credits="AI_CREDITS", per_unit="1")})
        platform.subscribe(plan)
        platform.grant(platform.pool(), "10")

        def reserve():
            return entitlement_reserve(
                platform.env, reference_id="cus_1", feature_key="tokens", units=D(3)
            ).allowed

        results = _run_threads(10, reserve)
        assert results.count(True) == 3  # 9 credits held, 1 left: a fourth hold of 3 is refused
        held = sum(r.credits for r in Reservation.objects.filter(status="held"))
        assert held == D(9)
