"""The fault tests' own servers: a throwaway PostgreSQL and Redis and the real web server.

``stack`` (once per module) starts PostgreSQL and Redis (``stack.py``), clones the
schema and data of the test database the session migrated (``pg_dump``, then ``psql``: a few
seconds, where migrating a fresh database takes minutes on a shared machine), seeds a
Platform tenant through the services, and starts the Procfile's web command against
them. ``outcome(target, fault)`` runs one fault under load once and keeps what
happened for the tests that read it. Nothing here touches the machine's own
PostgreSQL or Redis beyond reading the test database to clone it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .load import Answer, Http, Load
from .stack import ROOT, Postgres, Process, Redis, Web, child_env

WARM_UP = 1.5  # seconds of load before the fault
DOWN = 3.0  # seconds the store stays down (killed) or frozen
AFTER = 1.5  # seconds of load after recovery
RECOVERY = 5.0  # seconds after the restart within which everything must work again


@dataclasses.dataclass
class Stack:
    root: Path
    postgres: Postgres
    redis: Redis
    web: Web
    seed: dict[str, Any]
    outcomes: dict[tuple[str, str], Outcome] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Outcome:
    target: str
    fault: str
    load: Load
    fault_at: float  # monotonic: the signal was sent
    restore_at: float  # the restart (or SIGCONT) began
    restored_at: float  # the store answers again
    recovered_at: float  # readyz, a check and an event all succeeded again (inf: never)
    log_lines: list[str]  # the web server's unhandled-error lines during the scenario
    stored: dict[str, int]  # idempotency key -> events stored with it (after the retries)
    keys_in_ledger: set[str]  # keys of the environment's key table for this scenario

    def answers(self, *ops: str) -> list[Answer]:
        return self.load.of(*ops)

    def during(self, *ops: str) -> list[Answer]:
        """Answers to requests made while the store was down (a little after the signal,
        so requests already past the store are not counted, until the restart)."""
        return [a for a in self.answers(*ops) if self.fault_at + 0.5 <= a.started < self.restore_at]

    def overlapping(self, *ops: str) -> list[Answer]:
        """Requests in flight at some point while the store was down (a frozen store holds
        the requests that reach it until the thaw)."""
        return [
            a
            for a in self.answers(*ops)
            if a.started < self.restore_at and a.ended > self.fault_at + 0.5
        ]

    def after(self, *ops: str) -> list[Answer]:
        """Answers to requests made once the store answered again."""
        return [a for a in self.answers(*ops) if a.started >= self.restored_at]

    def recovered(self, *ops: str) -> list[Answer]:
        """Answers to requests made once everything worked again."""
        return [a for a in self.answers(*ops) if a.started >= self.recovered_at]


def _clone_test_database(target: Postgres) -> None:
    """Copy the session's (migrated) test database into ``target``: schema and data."""
    from django.db import connection

    source = connection.settings_dict
    name = connection.creation._get_test_db_name()  # the session's (xdist worker's) own
    env = {**os.environ, "PGPASSWORD": str(source.get("PASSWORD") or "")}
    dump = target.root / "clone.sql"
    subprocess.run(
        [
            str(target.bin / "pg_dump"),
            "--no-owner",
            "--no-acl",
            "-h",
            str(source.get("HOST") or "127.0.0.1"),
            "-p",
            str(source.get("PORT") or 5432),
            "-U",
            str(source.get("USER") or "postgres"),
            "-d",
            name,
            "-f",
            str(dump),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    # The machine's server may carry attribute options of its own (``pg_attver``) that a
    # stock PostgreSQL refuses; they are not part of the schema the migrations made.
    sql = dump.read_text()
    dump.write_text(re.sub(r"(?m)^ALTER TABLE ONLY .* SET \(pg_attver=\d+\);\n", "", sql))
    restore = subprocess.run(
        [
            str(target.bin / "psql"),
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            target.url,
            "-f",
            str(dump),
        ],
        capture_output=True,
        check=False,
    )
    assert restore.returncode == 0, restore.stderr.decode(errors="replace")[-3000:]
    dump.unlink()


@pytest.fixture(scope="module")
def stack(django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("faults")
    root.chmod(0o755)
    postgres, redis = Postgres(root), Redis(root)
    started: list[Process] = []
    try:
        postgres.init()
        postgres.start()
        started.append(postgres)
        postgres.create_database()
        _clone_test_database(postgres)
        redis.start()
        started.append(redis)
        env = child_env(postgres, redis)
        seeded = subprocess.run(
            [sys.executable, "-m", "tests.faults.seed"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=False,
        )
        assert seeded.returncode == 0, seeded.stderr.decode(errors="replace")[-3000:]
        web = Web(root, env)
        web.start(timeout=120)
        started.append(web)
        yield Stack(root, postgres, redis, web, json.loads(seeded.stdout))
    finally:
        for process in reversed(started):
            process.stop()


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _retry_unacknowledged(stack: Stack, load: Load) -> None:
    """After recovery, send every key the server did not acknowledge again (a client's
    retry), until each is acknowledged: stored now, or 409 ``duplicate_event``."""
    client = Http(stack.web.port)
    deadline = time.monotonic() + 30
    try:
        while (missing := sorted(load.sent - load.acked)) and time.monotonic() < deadline:
            for key in missing:
                load.send_event(client, key, time.monotonic())
            time.sleep(0.2)
    finally:
        client.close()


def run_fault(stack: Stack, target: str, fault: str) -> Outcome:
    process: Process = stack.postgres if target == "postgres" else stack.redis
    log_start = stack.web.log.stat().st_size
    load = Load(stack.web.port, stack.seed, tag=f"{target}-{fault}")
    load.start()
    try:
        time.sleep(WARM_UP)
        fault_at = time.monotonic()
        if fault == "kill":
            process.kill()
        else:
            process.freeze()
        time.sleep(DOWN)
        restore_at = time.monotonic()
        if fault == "kill":
            process.start()
        else:
            process.thaw()
        restored_at = time.monotonic()

        def recovered() -> bool:
            fresh = [a for a in load.answers if a.started >= restored_at]
            return (
                any(a.op == "readyz" and a.status == 200 for a in fresh)
                and any(a.op == "check" and a.allowed for a in fresh)
                and any(a.op == "event" and a.status == 201 for a in fresh)
            )

        recovered_at = float("inf")
        if _wait_until(recovered, RECOVERY + 10):
            recovered_at = time.monotonic()
        time.sleep(AFTER)
    finally:
        load.stop()
    _retry_unacknowledged(stack, load)
    tag = f"{target}-{fault}-%"
    rows = stack.postgres.query(
        "SELECT meta->>'key', count(*) FROM events_event WHERE meta->>'scenario' = %s GROUP BY 1",
        [f"{target}-{fault}"],
    )
    keys = stack.postgres.query(
        "SELECT idempotency_key FROM events_eventkey WHERE idempotency_key LIKE %s", [tag]
    )
    with stack.web.log.open("rb") as log:
        log.seek(log_start)
        text = log.read().decode(errors="replace")
    return Outcome(
        target=target,
        fault=fault,
        load=load,
        fault_at=fault_at,
        restore_at=restore_at,
        restored_at=restored_at,
        recovered_at=recovered_at,
        log_lines=[line for line in text.splitlines() if Web.UNHANDLED.search(line)],
        stored={str(key): int(count) for key, count in rows},
        keys_in_ledger={key for (key,) in keys},
    )


@pytest.fixture(scope="module")
def outcome(stack: Stack) -> Callable[[str, str], Outcome]:
    """``outcome(target, fault)``: the scenario, run on first use and kept for the module."""

    def get(target: str, fault: str) -> Outcome:
        if (target, fault) not in stack.outcomes:
            stack.outcomes[(target, fault)] = run_fault(stack, target, fault)
        return stack.outcomes[(target, fault)]

    return get
