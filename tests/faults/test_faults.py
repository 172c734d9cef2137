"""PostgreSQL and Redis killed (SIGKILL), frozen (SIGSTOP / SIGCONT) and restarted under a
bounded load against the real web server (granian, the Procfile's command): what
integrators and operators rely on while a data store is down and after it is back.

* an entitlement check never answers 5xx: ``allowed`` with a decision, or ``allowed:
  false`` with ``reason.code`` ``unavailable`` (and with Redis down, checks are still
  decided, from PostgreSQL);
* no request ends in a 500 or an unhandled error; the only 5xx is 503 ``unavailable``
  with ``Retry-After``;
* no acknowledged event is lost or stored twice; with Redis down events are still
  stored and answered;
* ``/readyz`` answers 503 while a store is down and 200 after;
* everything works again within ``RECOVERY`` seconds of the restart.

Each scenario runs once (``conftest.outcome``) and the tests below read what happened.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from .conftest import RECOVERY, Outcome

# ``django_db``: the stack clones the session's test database, which pytest-django
# creates only for sessions whose tests ask for it (a run of this module alone too).
pytestmark = [pytest.mark.faults, pytest.mark.xdist_group("faults"), pytest.mark.django_db]

SCENARIOS = [
    pytest.param("postgres", "kill", id="postgres-kill"),
    pytest.param("postgres", "freeze", id="postgres-freeze"),
    pytest.param("redis", "kill", id="redis-kill"),
    pytest.param("redis", "freeze", id="redis-freeze"),
]
REDIS = [p for p in SCENARIOS if p.values[0] == "redis"]
CHECKS = ("check", "check_get", "evaluate")
API = (*CHECKS, "event", "batch")

Get = Callable[[str, str], Outcome]


def _summary(answers: list) -> str:
    seen: dict[str, int] = {}
    for answer in answers:
        seen[answer.describe()] = seen.get(answer.describe(), 0) + 1
    return ", ".join(f"{text} x{count}" for text, count in sorted(seen.items()))


@pytest.mark.parametrize(("target", "fault"), SCENARIOS)
def test_checks_never_answer_5xx(outcome: Get, target: str, fault: str) -> None:
    result = outcome(target, fault)
    checks = result.answers(*CHECKS)
    assert result.overlapping(*CHECKS), "no check was made while the store was down"
    wrong = [
        a
        for a in checks
        if a.status != 200 or a.allowed is None or a.code not in {None, "unavailable"}
    ]
    assert not wrong, _summary(wrong)
    # Allowed, or denied because the check could not be made: never another reason here.
    assert all(a.allowed or a.code == "unavailable" for a in checks), _summary(checks)


@pytest.mark.parametrize(("target", "fault"), REDIS)
def test_checks_are_decided_from_postgresql_while_redis_is_down(
    outcome: Get, target: str, fault: str
) -> None:
    result = outcome(target, fault)
    denied = [a for a in result.answers(*CHECKS) if not a.allowed]
    assert not denied, _summary(denied)


@pytest.mark.parametrize(("target", "fault"), SCENARIOS)
def test_no_500_and_no_unhandled_error(outcome: Get, target: str, fault: str) -> None:
    result = outcome(target, fault)
    answers = result.answers(*API, "readyz")
    wrong = [
        a
        for a in answers
        if a.status is not None
        and a.status >= 500
        and not (a.op == "readyz" and a.status == 503)
        and not (a.status == 503 and a.code == "unavailable" and a.retry_after)
    ]
    assert not wrong, _summary(wrong)
    unanswered = [a for a in answers if a.status is None and a.op != "readyz"]
    assert not unanswered, _summary(unanswered)
    # Login and signup have tests of their own (below).
    logged = [line for line in result.log_lines if not re.search(r"/api/signup|/accounts/", line)]
    assert not logged, "\n".join(logged[:20])


@pytest.mark.parametrize(("target", "fault"), SCENARIOS)
def test_no_acknowledged_event_is_lost_or_doubled(outcome: Get, target: str, fault: str) -> None:
    result = outcome(target, fault)
    load = result.load
    events = result.answers("event", "batch")
    expected = {"event": {201, 409, 503}, "batch": {200, 503}}
    wrong = [a for a in events if a.status not in expected[a.op]]
    assert not wrong, _summary(wrong)
    assert all(a.code == "duplicate_event" for a in events if a.status == 409)
    assert load.acked, "no event was acknowledged"
    lost = load.acked - set(result.stored)
    assert not lost, f"{len(lost)} acknowledged events are not stored"
    doubled = {key: n for key, n in result.stored.items() if n != 1}
    assert not doubled, doubled
    assert set(result.stored) == result.keys_in_ledger
    # After the clients' retries every event sent is stored, once; nothing else is.
    assert set(result.stored) == load.sent


@pytest.mark.parametrize(("target", "fault"), REDIS)
def test_events_are_stored_and_answered_while_redis_is_down(
    outcome: Get, target: str, fault: str
) -> None:
    result = outcome(target, fault)
    assert result.overlapping("event", "batch")
    refused = [a for a in result.answers("event", "batch") if a.status not in {200, 201}]
    assert not refused, _summary(refused)


@pytest.mark.parametrize(("target", "fault"), SCENARIOS)
def test_readyz_answers_503_while_down_and_200_after(outcome: Get, target: str, fault: str) -> None:
    result = outcome(target, fault)
    probes = result.during("readyz")
    assert probes, "no readiness probe while the store was down"
    # Answered (or given up on) before the restart: 503, or (a frozen store holding the
    # server's workers) no answer within the probe's timeout; either way a load balancer
    # takes the instance out. A probe held until the thaw may answer 200 then.
    down = [a for a in probes if a.ended < result.restore_at]
    assert all(a.status in {503, None} for a in down), _summary(probes)
    refused = {503} if fault == "kill" else {503, None}
    held = result.overlapping("readyz")
    assert any(a.status in refused for a in held), _summary(held)
    settled = result.recovered("readyz")
    assert settled and all(a.status == 200 for a in settled), _summary(settled)


@pytest.mark.parametrize(("target", "fault"), SCENARIOS)
def test_recovers_within_seconds_of_the_restart(outcome: Get, target: str, fault: str) -> None:
    result = outcome(target, fault)

    def first(op: str, ok: Callable) -> float:
        times = [a.ended for a in result.after(op) if ok(a)]
        return (min(times) - result.restored_at) if times else float("inf")

    timeline = ", ".join(
        f"{a.op}@{a.started - result.restored_at:+.2f}/{a.ended - result.restored_at:+.2f}"
        f"={a.status}"
        for a in result.answers("readyz", "check", "event")
        if a.ended >= result.restore_at
    )
    assert first("readyz", lambda a: a.status == 200) < RECOVERY, timeline
    assert first("check", lambda a: a.allowed) < RECOVERY, timeline
    assert first("event", lambda a: a.status == 201) < RECOVERY, timeline
    assert result.recovered_at - result.restored_at < RECOVERY
    late = [a for a in result.recovered(*API) if a.status not in {200, 201}]
    assert not late, _summary(late)


@pytest.mark.parametrize(("target", "fault"), SCENARIOS)
def test_login_survives(outcome: Get, target: str, fault: str) -> None:
    """The dashboard login: a 302 into the dashboard; with PostgreSQL down, 503 at worst
    (never a 500). Redis only counts sign-in attempts: around a Redis fault allauth may
    find its counter's lock held (a lock command a frozen Redis runs once it thaws keeps
    it for up to 10 s) and refuse safely with 429, never a 500; once PostgreSQL is back,
    every sign-in goes through, and once Redis is back sign-ins go through again."""
    result = outcome(target, fault)
    logins = result.answers("login")
    assert logins
    allowed = {302, 503} if target == "postgres" else {302, 429}
    wrong = [a for a in logins if a.status not in allowed]
    assert not wrong, _summary(wrong)
    settled = result.recovered("login")
    assert settled
    if target == "postgres":
        assert all(a.status == 302 for a in settled), _summary(settled)
    else:
        assert settled[-1].status == 302, _summary(settled)


@pytest.mark.parametrize(("target", "fault"), SCENARIOS)
def test_signup_survives(outcome: Get, target: str, fault: str) -> None:
    """``POST /api/signup``: 201; with PostgreSQL down, 503 ``unavailable`` at worst (never a
    500); Redis is not needed to sign up."""
    result = outcome(target, fault)
    signups = result.answers("signup")
    assert signups
    wrong = [
        a
        for a in signups
        if not (
            a.status == 201
            or (target == "postgres" and a.status == 503 and a.code == "unavailable")
        )
    ]
    assert not wrong, _summary(wrong)
