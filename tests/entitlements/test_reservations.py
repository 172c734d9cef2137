"""Reservations: holds against the cap and the hard-limit credit balance, settled by the
event that follows, expiring unsettled; never over a hard limit under concurrency."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal as D

import pytest
from django.db import connection
from django.utils import timezone

from apps.core.errors import Conflict
from apps.entitlements.models import Reservation
from apps.entitlements.services import (
    entitlement_reserve,
    reservation_release,
    reservations_expire,
)
from apps.events.ingest import event_record
from apps.events.models import Event
from tests.factories import make_key

from .conftest import rule

pytestmark = pytest.mark.django_db

RELEASE = "/api/v1/client/entitlements/reservations"


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


class TestRelease:
    """``POST /entitlements/reservations/{id}/release``: the call did not happen."""

    @staticmethod
    def release(platform, reservation_id, key=None):
        return platform.api(key).post(f"{RELEASE}/{reservation_id}/release")

    def test_a_released_hold_stops_counting_at_once(self, capped):
        reservation_id = capped.check(units=8, reserve=True)["reservationId"]
        assert capped.check(units=3)["allowed"] is False
        response = self.release(capped, reservation_id)
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["id"], body["status"]) == (reservation_id, "released")
        assert (body["customerReferenceId"], body["featureKey"]) == ("cus_1", "tokens")
        assert body["units"] == "8" and body["releasedAt"] is not None
        after = capped.check(units=3)
        assert after["allowed"] is True and after["usage"]["held"] == "0"
        # Released twice: answered as it is, nothing changes.
        again = self.release(capped, reservation_id)
        assert again.status_code == 200 and again.json()["releasedAt"] == body["releasedAt"]

    def test_a_released_hold_is_not_settled_by_a_late_event(self, capped):
        reservation_id = capped.check(units=2, reserve=True)["reservationId"]
        self.release(capped, reservation_id)
        late = capped.event(units=2, reservationId=reservation_id).json()
        assert (late["reservationStatus"], late["reservationProblem"]) == ("not_held", "released")
        assert capped.check()["usage"]["used"] == "2"  # the event itself counts

    def test_settled_or_expired_holds_cannot_be_released(self, capped):
        settled = capped.check(units=1, reserve=True)["reservationId"]
        capped.event(units=1, reservationId=settled)
        response = self.release(capped, settled)
        assert response.status_code == 409
        error = response.json()["error"]
        assert (error["code"], error["status"]) == ("reservation_not_held", "settled")
        lapsed = capped.check(units=1, reserve=True)["reservationId"]
        Reservation.objects.filter(pk=lapsed).update(
            expires_at=timezone.now() - dt.timedelta(seconds=1)
        )
        response = self.release(capped, lapsed)
        assert response.status_code == 409 and response.json()["error"]["status"] == "expired"
        assert Reservation.objects.get(pk=lapsed).status == "held"  # the task marks it

    def test_credits_held_come_back(self, platform):
        plan = platform.plan("pro", {"tokens": rule(price="1", credits="AI_CREDITS", per_unit="2")})
        platform.subscribe(plan)
        platform.grant(platform.pool(), "10")
        reservation_id = platform.check(units=5, reserve=True)["reservationId"]
        assert platform.check(units=1)["credits"]["available"] == "0"
        body = self.release(platform, reservation_id).json()
        assert (body["credits"], body["denomination"]) == ("10", "AI_CREDITS")
        after = platform.check(units=1)["credits"]
        assert (after["available"], after["held"]) == ("10", "0")

    def test_outsiders_and_the_live_environment_get_a_404(self, capped, outsider):
        reservation_id = capped.check(units=4, reserve=True)["reservationId"]
        for key in (outsider.sk_test, capped.tenant.sk_live):
            response = self.release(capped, reservation_id, key)
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"
        assert self.release(capped, "not-a-uuid").status_code == 404
        assert Reservation.objects.get(pk=reservation_id).status == "held"

    def test_customer_keys_release_only_their_own(self, capped):
        reservation_id = capped.check(units=4, reserve=True)["reservationId"]
        other = make_key(capped.env, "ck", customer=capped.customer("cus_2"), scopes=["read"])
        assert self.release(capped, reservation_id, other.plaintext).status_code == 404
        own = make_key(capped.env, "ck", customer=capped.customer("cus_1"), scopes=["read"])
        assert self.release(capped, reservation_id, own.plaintext).status_code == 200

    def test_a_key_without_events_write_is_refused(self, capped):
        reservation_id = capped.check(units=4, reserve=True)["reservationId"]
        reader = make_key(capped.env, "obs", scopes=["usage.read"]).plaintext
        response = self.release(capped, reservation_id, reader)
        assert response.status_code == 403
        assert response.json()["error"]["requiredScope"] == "events.write"
        assert Reservation.objects.get(pk=reservation_id).status == "held"


def _run_threads(count, target):
    """``target`` in ``count`` threads at once; their results."""
    barrier = threading.Barrier(count)

    def together():
        barrier.wait(timeout=30)
        return target()

    return _run_each([together] * count)


def _run_each(targets):
    """Run each target in its own thread (each with its own connection); their results."""
    results: list = []
    errors: list = []

    def run(target):
        try:
            results.append(target())
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(target,)) for target in targets]
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

    def test_a_release_and_the_settling_event_race_to_one_outcome(self, platform):
        platform.subscribe(platform.plan("pro", {"tokens": rule(price="1", cap="10")}))
        for _round in range(5):
            held = entitlement_reserve(
                platform.env, reference_id="cus_1", feature_key="tokens", units=D(2)
            ).reservation
            assert held is not None
            go = threading.Barrier(2)

            def release(reservation=held, go=go):
                go.wait(timeout=30)
                try:
                    return "release", reservation_release(platform.env, reservation.pk).status
                except Conflict as exc:
                    return "release", exc.extra["status"]

            def settle(reservation=held, go=go):
                body = {
                    "eventName": "call",
                    "customerReferenceId": "cus_1",
                    "featureKey": "tokens",
                    "usageUnits": "2",
                    "costAmount": "0.001",
                    "reservationId": str(reservation.pk),
                }
                go.wait(timeout=30)
                recorded = event_record(environment=platform.env, body=body, api_key_id=None)
                return "settle", recorded.item.answer["reservationStatus"]

            results = dict(_run_each([release, settle]))
            final = Reservation.objects.get(pk=held.pk).status
            if final == "settled":  # the event came first: the release found it settled
                assert results == {"release": "settled", "settle": "settled"}
            else:
                assert final == "released"
                assert results == {"release": "released", "settle": "not_held"}
